//! The `limits` table (per client key and per account limits and budgets), and the rollup sums
//! the limiter starts from and shares between instances: this month's tokens per account, key
//! and model, by day, and this hour's.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Pool, Store, StoreError};
use crate::usage::Usage;

/// What a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A client key: its `client_keys` id, or `file:<domain>` for a credential file's key.
    Key,
    /// An account: its domain (the credential file's name).
    Account,
}

impl SubjectKind {
    fn as_str(&self) -> &'static str {
        match self {
            SubjectKind::Key => "key",
            SubjectKind::Account => "account",
        }
    }
}

impl FromStr for SubjectKind {
    type Err = String;
    fn from_str(s: &str) -> Result<SubjectKind, String> {
        match s {
            "key" => Ok(SubjectKind::Key),
            "account" => Ok(SubjectKind::Account),
            other => Err(format!("{other:?} is neither key nor account")),
        }
    }
}

/// A key or an account, by its id or domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct Subject {
    pub kind: SubjectKind,
    pub id: String,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.id)
    }
}

/// One subject's limits; `None` is no limit. Token limits count input, cache writes and
/// output (not cache reads); spend is priced with the dashboard's price table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSet {
    #[schema(minimum = 1)]
    pub requests_per_minute: Option<u64>,
    #[schema(minimum = 1)]
    pub tokens_per_hour: Option<u64>,
    #[schema(minimum = 1)]
    pub tokens_per_day: Option<u64>,
    pub usd_per_day: Option<f64>,
    pub usd_per_month: Option<f64>,
}

impl LimitSet {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == LimitSet::default()
    }

    /// Whether any limit needs the shared token totals.
    pub fn counts_tokens(&self) -> bool {
        self.tokens_per_hour.is_some()
            || self.tokens_per_day.is_some()
            || self.usd_per_day.is_some()
            || self.usd_per_month.is_some()
    }

    /// Why these limits cannot be stored, if they cannot: a zero or negative limit (revoke the
    /// key to refuse everything), a spend that is not a finite number, or a count past what
    /// the database holds.
    pub fn invalid(&self) -> Option<String> {
        for (name, value) in [
            ("requests_per_minute", self.requests_per_minute),
            ("tokens_per_hour", self.tokens_per_hour),
            ("tokens_per_day", self.tokens_per_day),
        ] {
            if value.is_some_and(|v| v == 0 || v > i64::MAX as u64) {
                return Some(format!(
                    "{name} must be a whole number from 1 to {}",
                    i64::MAX
                ));
            }
        }
        for (name, value) in [
            ("usd_per_day", self.usd_per_day),
            ("usd_per_month", self.usd_per_month),
        ] {
            if value.is_some_and(|v| !v.is_finite() || v <= 0.0) {
                return Some(format!("{name} must be a positive amount of dollars"));
            }
        }
        None
    }
}

/// Tokens of one (day or hour, account, key, model) rollup group.
#[derive(Debug, Clone)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (days) or `YYYY-MM-DD HH` (hours).
    pub period: String,
    /// `''` for none, as in the rollups.
    pub account_id: String,
    pub api_key_hash: String,
    pub model: String,
    pub usage: Usage,
}

const LIMIT_COLUMNS: &str = "subject_kind, subject, requests_per_minute, tokens_per_hour, \
                             tokens_per_day, usd_per_day, usd_per_month";

impl Store {
    /// Every subject's limits.
    pub async fn limits(&self) -> Result<Vec<(Subject, LimitSet)>, StoreError> {
        let started = Instant::now();
        let sql = format!("SELECT {LIMIT_COLUMNS} FROM limits ORDER BY subject_kind, subject");
        let rows = with_pool!(self, pool => {
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
            rows.iter().map(|row| {
                let kind: String = row.try_get("subject_kind")?;
                let count = |name: &str| -> Result<Option<u64>, sqlx::Error> {
                    Ok(row.try_get::<Option<i64>, _>(name)?.map(|n| n.max(0) as u64))
                };
                Ok((
                    Subject {
                        kind: kind.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                        id: row.try_get("subject")?,
                    },
                    LimitSet {
                        requests_per_minute: count("requests_per_minute")?,
                        tokens_per_hour: count("tokens_per_hour")?,
                        tokens_per_day: count("tokens_per_day")?,
                        usd_per_day: row.try_get("usd_per_day")?,
                        usd_per_month: row.try_get("usd_per_month")?,
                    },
                ))
            }).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        self.note_duration("limits", started);
        Ok(rows)
    }

    /// Sets `subject`'s limits (all of them: a `None` removes that limit); an empty set
    /// deletes the row.
    pub async fn set_limits(&self, subject: &Subject, set: &LimitSet) -> Result<(), StoreError> {
        if set.is_empty() {
            self.delete_limits(subject).await?;
            return Ok(());
        }
        let started = Instant::now();
        let sql = format!(
            "INSERT INTO limits ({LIMIT_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (subject_kind, subject) DO UPDATE SET \
             requests_per_minute = excluded.requests_per_minute, \
             tokens_per_hour = excluded.tokens_per_hour, tokens_per_day = excluded.tokens_per_day, \
             usd_per_day = excluded.usd_per_day, usd_per_month = excluded.usd_per_month, \
             updated_at = excluded.updated_at"
        );
        let sql = AssertSqlSafe(self.dialect().sql(&sql).into_owned());
        let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let now = crate::record::iso(OffsetDateTime::now_utc());
        with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(subject.kind.as_str())
                .bind(subject.id.clone())
                .bind(count(set.requests_per_minute))
                .bind(count(set.tokens_per_hour))
                .bind(count(set.tokens_per_day))
                .bind(set.usd_per_day)
                .bind(set.usd_per_month)
                .bind(now)
                .execute(pool)
                .await
                .map(drop)?;
        });
        self.note_duration("set_limits", started);
        Ok(())
    }

    /// Removes `subject`'s limits; whether it had any.
    pub async fn delete_limits(&self, subject: &Subject) -> Result<bool, StoreError> {
        let sql = self
            .dialect()
            .sql("DELETE FROM limits WHERE subject_kind = ? AND subject = ?");
        let sql = AssertSqlSafe(sql.into_owned());
        let deleted = with_pool!(self, pool => {
            sqlx::query(sql)
                .bind(subject.kind.as_str())
                .bind(subject.id.clone())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// The rollups' tokens by account, key and model: per day from `first_day`
    /// (`YYYY-MM-DD`, [`super::day_of`]) on, and for the hour `hour` (`YYYY-MM-DD HH`,
    /// [`super::hour_of`]) when one is asked for.
    pub async fn usage_for_limits(
        &self,
        first_day: &str,
        hour: Option<&str>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let started = Instant::now();
        let sums = "CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
                    CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
                    CAST(SUM(cache_creation_input_tokens) AS BIGINT) AS cache_creation_input_tokens, \
                    CAST(SUM(cache_read_input_tokens) AS BIGINT) AS cache_read_input_tokens";
        let mut sql = format!(
            "SELECT day AS period, account_id, api_key_hash, model, {sums} FROM usage_daily \
             WHERE day >= ? GROUP BY day, account_id, api_key_hash, model"
        );
        if hour.is_some() {
            sql.push_str(&format!(
                " UNION ALL \
                 SELECT hour AS period, account_id, api_key_hash, model, {sums} FROM usage_hourly \
                 WHERE hour = ? GROUP BY hour, account_id, api_key_hash, model"
            ));
        }
        let sql = AssertSqlSafe(self.dialect().sql(&sql).into_owned());
        let rows = with_pool!(self, pool => {
            let mut query = sqlx::query(sql).bind(first_day.to_string());
            if let Some(hour) = hour {
                query = query.bind(hour.to_string());
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(|row| {
                let n = |name: &str| -> Result<u64, sqlx::Error> {
                    Ok(row.try_get::<Option<i64>, _>(name)?.unwrap_or(0).max(0) as u64)
                };
                Ok(UsageRow {
                    period: row.try_get("period")?,
                    account_id: row.try_get("account_id")?,
                    api_key_hash: row.try_get("api_key_hash")?,
                    model: row.try_get("model")?,
                    usage: Usage {
                        input_tokens: n("input_tokens")?,
                        output_tokens: n("output_tokens")?,
                        cache_creation_input_tokens: n("cache_creation_input_tokens")?,
                        cache_read_input_tokens: n("cache_read_input_tokens")?,
                    },
                })
            }).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        self.note_duration("usage_for_limits", started);
        Ok(rows)
    }
}
