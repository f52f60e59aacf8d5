//! The security guide's monitoring queries, run against the database: failed
//! authentications (proxy 401s and wrong dashboard keys, by login or bearer) and days of unusual token use per
//! account.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::store::{DailyCount, Store};

use super::{Check, Status};

/// Failed authentications per domain and day above which the guide's query flags a domain.
pub const FAILED_AUTH_PER_DAY: u64 = 10;
/// A day's tokens for an account are a spike above this many times its average day…
pub const SPIKE_FACTOR: u64 = 3;
/// …and above this many tokens.
pub const SPIKE_MIN_TOKENS: u64 = 100_000;

/// The one check in their place when the database could not be opened.
pub(super) fn unavailable() -> Check {
    Check::new(
        "database",
        "Monitoring queries",
        Status::Warn,
        "the database could not be opened, so failed authentications and token spikes were not checked".into(),
    )
    .fix("check DATABASE_URL; start the server once to create the database")
}

pub(super) async fn failed_auth(store: &Store) -> Check {
    let title = "Failed authentications in the last 24 hours";
    let since = OffsetDateTime::now_utc() - time::Duration::hours(24);
    let rows = match store.failed_auth_by_day(since).await {
        Ok(rows) => rows,
        Err(e) => {
            return Check::new(
                "failed-auth",
                title,
                Status::Warn,
                format!("the query failed: {e}"),
            );
        }
    };
    let total: u64 = rows.iter().map(|r| r.value).sum();
    let flagged: Vec<String> = rows
        .iter()
        .filter(|r| r.value > FAILED_AUTH_PER_DAY)
        .map(|r| format!("{} on {}: {}", r.domain, r.day, r.value))
        .collect();
    let mut detail = format!("{total} proxy request(s) refused with 401");
    match store.failed_dashboard_logins(since).await {
        Ok(n) => detail.push_str(&format!("; {n} wrong dashboard key(s)")),
        Err(e) => detail.push_str(&format!("; wrong dashboard keys unknown: {e}")),
    }
    if flagged.is_empty() {
        Check::new("failed-auth", title, Status::Pass, detail)
    } else {
        detail.push_str(&format!(
            "; more than {FAILED_AUTH_PER_DAY} a day for {}",
            flagged.join(", ")
        ));
        Check::new("failed-auth", title, Status::Warn, detail).fix(
            "find the client with the wrong key in the Requests page (status 401) and rotate the key if it leaked",
        )
    }
}

pub(super) async fn token_spikes(store: &Store) -> Check {
    let title = "No token spikes per account";
    let since = OffsetDateTime::now_utc() - time::Duration::days(8);
    let rows = match store.daily_tokens_by_account(since).await {
        Ok(rows) => rows,
        Err(e) => {
            return Check::new(
                "token-spikes",
                title,
                Status::Warn,
                format!("the query failed: {e}"),
            );
        }
    };
    let spikes = find_spikes(&rows);
    if spikes.is_empty() {
        Check::new(
            "token-spikes",
            title,
            Status::Pass,
            format!(
                "no account's day above {SPIKE_FACTOR}× its average in the last 8 days (and {SPIKE_MIN_TOKENS} tokens)"
            ),
        )
    } else {
        Check::new("token-spikes", title, Status::Warn, spikes.join("; "))
            .fix("look at the account's requests; if they are not yours, rotate its client key")
    }
}

/// Days whose tokens exceed [`SPIKE_FACTOR`] times the account's average of its other days.
fn find_spikes(rows: &[DailyCount]) -> Vec<String> {
    let mut by_account: BTreeMap<(String, String), Vec<(&str, u64)>> = BTreeMap::new();
    for r in rows {
        by_account
            .entry((r.account_id.clone().unwrap_or_default(), r.domain.clone()))
            .or_default()
            .push((&r.day, r.value));
    }
    let mut spikes = Vec::new();
    for ((account, domain), days) in by_account {
        if days.len() < 2 {
            continue;
        }
        for (i, (day, tokens)) in days.iter().enumerate() {
            let others: u64 = days
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, t))| t)
                .sum();
            let average = others / (days.len() as u64 - 1);
            if *tokens > SPIKE_MIN_TOKENS && *tokens > SPIKE_FACTOR * average.max(1) {
                spikes.push(format!(
                    "{account} ({domain}) used {tokens} tokens on {day}, against {average} on an average day"
                ));
            }
        }
    }
    spikes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_stand_out_from_the_accounts_usual_days() {
        let day = |d: &str, v: u64| DailyCount {
            account_id: Some("acc".into()),
            domain: "a.example".into(),
            day: d.into(),
            value: v,
        };
        let quiet = [day("2026-11-27", 50_000), day("2026-11-26", 40_000)];
        assert!(find_spikes(&quiet).is_empty());
        let spiky = [
            day("2026-11-28", 900_000),
            day("2026-11-27", 50_000),
            day("2026-11-26", 40_000),
        ];
        let spikes = find_spikes(&spiky);
        assert_eq!(spikes.len(), 1);
        assert!(spikes[0].contains("900000 tokens on 2026-11-28"));
    }
}
