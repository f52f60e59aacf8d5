//! The rollups, `usage_hourly` and `usage_daily`: requests and token sums per UTC hour (and
//! day) and (model, status, account, domain, client key). Each batch of records is folded in
//! memory and added to both in the batch's own transaction, so the overview reads hours or days
//! × key combinations rather than every row of its window, and a batch counts exactly once or
//! not at all.

use std::collections::{BTreeMap, HashMap};

use sqlx::{Postgres, Sqlite, Transaction};
use time::{OffsetDateTime, UtcOffset};

use super::Dialect;
use crate::keys::KeyHash;
use crate::record::Record;
use crate::usage::Usage;

/// One rollup row's key. A missing model, account or key is `""` (a primary key cannot hold
/// NULL); the reader maps `""` back to `None`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PeriodKey {
    /// `YYYY-MM-DD HH` in `usage_hourly`, `YYYY-MM-DD` in `usage_daily`.
    period: String,
    model: String,
    status: i32,
    account_id: String,
    domain: String,
    api_key_hash: String,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sums {
    requests: i64,
    usage: Usage,
}

/// The rollup rows a batch adds to each table, in key order (so that two instances sharing a
/// PostgreSQL database lock the rows they both touch in the same order).
#[derive(Debug, Default)]
pub(super) struct Folded {
    hourly: BTreeMap<PeriodKey, Sums>,
    daily: BTreeMap<PeriodKey, Sums>,
}

pub(super) fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> Folded {
    // Grouped on borrowed fields and the hour's number first: a batch has few groups, and only
    // those become keys of owned, formatted text.
    type Group<'a> = (
        i64,
        Option<&'a str>,
        u16,
        Option<&'a str>,
        &'a str,
        Option<KeyHash>,
    );
    let mut groups: HashMap<Group<'a>, Sums> = HashMap::new();
    for r in records {
        let hour = r.timestamp.unix_timestamp().div_euclid(3600);
        let group = (
            hour,
            r.model.as_deref(),
            r.status,
            r.account_id.as_deref(),
            r.domain.as_str(),
            r.api_key_hash,
        );
        let sums = groups.entry(group).or_default();
        sums.requests += 1;
        sums.usage.add(&r.usage);
    }
    let mut folded = Folded::default();
    for ((hour, model, status, account_id, domain, api_key_hash), sums) in groups {
        let start = OffsetDateTime::from_unix_timestamp(hour * 3600)
            .expect("the start of a record's hour is a valid time");
        let hour = PeriodKey {
            period: hour_of(start),
            model: model.unwrap_or_default().to_string(),
            status: i32::from(status),
            account_id: account_id.unwrap_or_default().to_string(),
            domain: domain.to_string(),
            api_key_hash: api_key_hash.map(|h| h.to_string()).unwrap_or_default(),
        };
        let day = PeriodKey {
            period: hour.period[..10].to_string(),
            ..hour.clone()
        };
        for (totals, key) in [(&mut folded.hourly, hour), (&mut folded.daily, day)] {
            let total = totals.entry(key).or_default();
            total.requests += sums.requests;
            total.usage.add(&sums.usage);
        }
    }
    folded
}

/// The rollup's hour key of a time: UTC `YYYY-MM-DD HH`, the first 13 characters of a stored
/// SQLite timestamp.
pub fn hour_of(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour()
    )
}

/// The rollup's day key of a time: UTC `YYYY-MM-DD`.
pub fn day_of(at: OffsetDateTime) -> String {
    let mut key = hour_of(at);
    key.truncate(10);
    key
}

/// `INSERT … ON CONFLICT DO UPDATE` adding one group's sums to `table`, keyed by `period`.
fn upsert(dialect: Dialect, table: &str, period: &str) -> String {
    let sql = format!(
        "INSERT INTO {table} ({period}, model, response_status, account_id, domain, api_key_hash, \
         requests, input_tokens, output_tokens, cache_creation_input_tokens, \
         cache_read_input_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT ({period}, model, response_status, account_id, domain, api_key_hash) \
         DO UPDATE SET requests = {table}.requests + excluded.requests, \
         input_tokens = {table}.input_tokens + excluded.input_tokens, \
         output_tokens = {table}.output_tokens + excluded.output_tokens, \
         cache_creation_input_tokens = {table}.cache_creation_input_tokens \
         + excluded.cache_creation_input_tokens, \
         cache_read_input_tokens = {table}.cache_read_input_tokens \
         + excluded.cache_read_input_tokens"
    );
    dialect.sql(&sql).into_owned()
}

/// Adds a batch's groups to both rollups inside `tx`: one upsert per group (a batch rarely
/// has more than a handful).
macro_rules! add_fn {
    ($name:ident, $db:ty, $dialect:expr) => {
        pub(super) async fn $name(
            tx: &mut Transaction<'static, $db>,
            folded: &Folded,
        ) -> Result<(), sqlx::Error> {
            static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
                [
                    upsert($dialect, "usage_hourly", "hour"),
                    upsert($dialect, "usage_daily", "day"),
                ]
            });
            for (sql, groups) in [(&SQL[0], &folded.hourly), (&SQL[1], &folded.daily)] {
                for (key, sums) in groups {
                    sqlx::query(sql.as_str())
                        .bind(&key.period)
                        .bind(&key.model)
                        .bind(key.status)
                        .bind(&key.account_id)
                        .bind(&key.domain)
                        .bind(&key.api_key_hash)
                        .bind(sums.requests)
                        .bind(as_i64(sums.usage.input_tokens))
                        .bind(as_i64(sums.usage.output_tokens))
                        .bind(as_i64(sums.usage.cache_creation_input_tokens))
                        .bind(as_i64(sums.usage.cache_read_input_tokens))
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Ok(())
        }
    };
}

add_fn!(add_sqlite, Sqlite, Dialect::Sqlite);
add_fn!(add_postgres, Postgres, Dialect::Postgres);

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_utc_prefixes_of_stored_timestamps() {
        let at = time::macros::datetime!(2026-03-09 23:59:59.999 -02:00);
        assert_eq!(hour_of(at), "2026-03-10 01");
        let stored = super::super::format_timestamp(at);
        assert_eq!(&stored[..13], hour_of(at));
    }
}
