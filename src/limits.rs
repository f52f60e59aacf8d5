//! Limits and budgets per client key and per account: requests per minute, tokens per hour
//! and per day, dollars per day and per month. A request over a limit is refused before
//! anything goes upstream (429, `rate_limit_error`, with `retry-after` and `x-ratelimit-*`).
//!
//! Every check is in memory ([`Limiter::check`]: one lock, no I/O); with no limits set it is
//! one atomic load. Requests per minute are a paced rate counted at admission, per instance: a
//! burst of up to the limit, then one every minute/limit ([`Pace`]). Tokens and dollars are charged with the response's actual usage when it ends
//! ([`Limiter::charge`]), so the request that crosses a limit completes and the next one is
//! refused; they count in calendar windows (UTC hour, day, month) so that they line up with
//! the database's rollups: the refresher ([`spawn_refresher`]) reloads the limits every two
//! seconds and takes the larger of its own totals and the rollups' (which hold every
//! instance's written records), so budgets survive a restart and are shared by the instances
//! on one PostgreSQL, within seconds.
//!
//! Tokens counted: input, cache writes and output. Cache reads are not (as Anthropic's own
//! input limits do not count them for current models); dollars include them at their price.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use time::{Date, Month, OffsetDateTime, Time};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::accounts::client_keys::{self, ClientKeys, FILE_KEY_PREFIX, KeyError};
use crate::accounts::credentials::Credentials;
use crate::prices::PriceTable;
use crate::store::{Store, UsageRow, day_of, hour_of};
use crate::usage::Usage;

pub use crate::store::{LimitSet, Subject, SubjectKind};

/// How often the refresher reloads the limits and the shared totals.
pub const REFRESH: Duration = Duration::from_secs(2);
const MINUTE: Duration = Duration::from_secs(60);

/// The request a limit refused, for its 429.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub subject: Subject,
    /// `requests_per_minute`, `tokens_per_hour`, … (the [`LimitSet`] field).
    pub limit: &'static str,
    /// The limit's value as the headers show it.
    pub value: String,
    /// When the limit's window has room again.
    pub reset: OffsetDateTime,
    pub retry_after: Duration,
}

/// What a subject has used of its current windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Used {
    pub requests_last_minute: u64,
    pub tokens_this_hour: u64,
    pub tokens_today: u64,
    pub usd_today: f64,
    pub usd_this_month: f64,
}

/// A value that belongs to one calendar window (an hour, a day, a month by its index) and
/// reads as zero in any other.
#[derive(Debug, Default, Clone, Copy)]
struct Windowed<T> {
    window: i64,
    value: T,
}

impl<T: Copy + Default + PartialOrd + std::ops::Add<Output = T>> Windowed<T> {
    fn get(&self, window: i64) -> T {
        if self.window == window {
            self.value
        } else {
            T::default()
        }
    }

    fn add(&mut self, window: i64, amount: T) {
        self.value = self.get(window) + amount;
        self.window = window;
    }

    /// The larger of this and `total` (the database's figure for `window`).
    fn at_least(&mut self, window: i64, total: T) {
        if total > self.get(window) {
            self.value = total;
            self.window = window;
        }
    }
}

/// The calendar windows of one moment.
#[derive(Debug, Clone, Copy)]
struct Windows {
    hour: i64,
    day: i64,
    month: i64,
}

impl Windows {
    fn at(now: OffsetDateTime) -> Windows {
        let seconds = now.unix_timestamp();
        Windows {
            hour: seconds.div_euclid(3600),
            day: seconds.div_euclid(86_400),
            month: i64::from(now.year()) * 12 + i64::from(u8::from(now.month())),
        }
    }
}

/// Requests per minute as a paced rate with a burst (the generic cell rate algorithm): up to
/// the limit at once, then one every minute/limit; one instant of state whatever the limit.
#[derive(Debug, Default)]
struct Pace {
    /// When the next request would be on time (the "theoretical arrival time").
    due: Option<Instant>,
}

impl Pace {
    /// The spacing of `max` requests a minute.
    fn interval(max: u64) -> Duration {
        Duration::from_nanos((MINUTE.as_nanos() / u128::from(max.max(1))) as u64)
    }

    /// How long until a request is admitted at `now` (zero: now).
    fn wait(&self, max: u64, now: Instant) -> Duration {
        if max == 0 {
            return MINUTE; // (a limit of 0, possible only by SQL, refuses everything)
        }
        let due = self.due.map_or(now, |due| due.max(now));
        let tolerance = MINUTE - Self::interval(max);
        due.duration_since(now).saturating_sub(tolerance)
    }

    fn admit(&mut self, max: u64, now: Instant) {
        let due = self.due.map_or(now, |due| due.max(now));
        self.due = Some(due + Self::interval(max));
    }

    /// The requests counted against the limit now (what the burst has used of it).
    fn used(&self, max: u64, now: Instant) -> u64 {
        let ahead = self
            .due
            .map_or(Duration::ZERO, |due| due.saturating_duration_since(now));
        let interval = Self::interval(max).as_nanos().max(1);
        (ahead.as_nanos().div_ceil(interval) as u64).min(max)
    }
}

#[derive(Debug, Default)]
struct State {
    pace: Pace,
    tokens_hour: Windowed<u64>,
    tokens_day: Windowed<u64>,
    usd_day: Windowed<f64>,
    usd_month: Windowed<f64>,
}

impl State {
    fn used(&self, limits: &LimitSet, windows: Windows, now: Instant) -> Used {
        Used {
            requests_last_minute: limits
                .requests_per_minute
                .map_or(0, |max| self.pace.used(max, now)),
            tokens_this_hour: self.tokens_hour.get(windows.hour),
            tokens_today: self.tokens_day.get(windows.day),
            usd_today: self.usd_day.get(windows.day),
            usd_this_month: self.usd_month.get(windows.month),
        }
    }
}

/// The limits in force and what each subject has used.
pub struct Limiter {
    rules: ArcSwap<HashMap<Subject, LimitSet>>,
    state: Mutex<HashMap<Subject, State>>,
    prices: Arc<PriceTable>,
    /// One [`refresh`] at a time: the periodic one, having read the database before a
    /// dashboard change was stored, would otherwise put back the older limits after the
    /// change's own reload, for up to [`REFRESH`].
    refreshing: tokio::sync::Mutex<()>,
}

impl Limiter {
    pub fn new(prices: Arc<PriceTable>) -> Limiter {
        Limiter {
            rules: ArcSwap::default(),
            state: Mutex::default(),
            prices,
            refreshing: tokio::sync::Mutex::default(),
        }
    }

    /// Replaces the limits in force.
    pub fn set_rules(&self, rules: HashMap<Subject, LimitSet>) {
        self.rules.store(Arc::new(rules));
    }

    pub fn rules(&self) -> Arc<HashMap<Subject, LimitSet>> {
        self.rules.load_full()
    }

    /// Whether any limit is set (the proxy skips everything else when none is).
    pub fn active(&self) -> bool {
        !self.rules.load().is_empty()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a request of `subjects` at `now` (counting it against their per-minute limits),
    /// or says which limit refuses it.
    pub fn check(
        &self,
        subjects: &[Subject],
        wall: OffsetDateTime,
        now: Instant,
    ) -> Result<(), Refusal> {
        let rules = self.rules.load();
        let windows = Windows::at(wall);
        let mut state = self.state();
        for subject in subjects {
            let Some(limits) = rules.get(subject) else {
                continue;
            };
            let used = state_of(&mut state, subject);
            let refuse = |limit: &'static str, value: String, reset: OffsetDateTime| Refusal {
                subject: subject.clone(),
                limit,
                value,
                reset,
                retry_after: (reset - wall).try_into().unwrap_or(Duration::ZERO),
            };
            if let Some(max) = limits.requests_per_minute {
                let wait = used.pace.wait(max, now);
                if !wait.is_zero() {
                    return Err(refuse("requests_per_minute", max.to_string(), wall + wait));
                }
            }
            let day_end = next_day(wall);
            for (limit, max, value, reset) in [
                (
                    "tokens_per_hour",
                    limits.tokens_per_hour,
                    used.tokens_hour.get(windows.hour),
                    next_hour(wall),
                ),
                (
                    "tokens_per_day",
                    limits.tokens_per_day,
                    used.tokens_day.get(windows.day),
                    day_end,
                ),
            ] {
                if let Some(max) = max
                    && value >= max
                {
                    return Err(refuse(limit, max.to_string(), reset));
                }
            }
            for (limit, max, value, reset) in [
                (
                    "usd_per_day",
                    limits.usd_per_day,
                    used.usd_day.get(windows.day),
                    day_end,
                ),
                (
                    "usd_per_month",
                    limits.usd_per_month,
                    used.usd_month.get(windows.month),
                    next_month(wall),
                ),
            ] {
                if let Some(max) = max
                    && value >= max
                {
                    return Err(refuse(limit, format!("{max:.2}"), reset));
                }
            }
        }
        for subject in subjects {
            if let Some(max) = rules.get(subject).and_then(|l| l.requests_per_minute) {
                state_of(&mut state, subject).pace.admit(max, now);
            }
        }
        Ok(())
    }

    /// Charges a response's `usage` on `model` to `subjects` (those with token or dollar
    /// limits).
    pub fn charge(
        &self,
        subjects: &[Subject],
        model: Option<&str>,
        usage: &Usage,
        wall: OffsetDateTime,
    ) {
        let tokens = counted_tokens(usage);
        if tokens == 0 && usage.cache_read_input_tokens == 0 {
            return;
        }
        let rules = self.rules.load();
        let usd = self.prices.cost(model, usage).unwrap_or(0.0);
        let windows = Windows::at(wall);
        let mut state = self.state();
        for subject in subjects {
            if !rules.get(subject).is_some_and(LimitSet::counts_tokens) {
                continue;
            }
            let used = state_of(&mut state, subject);
            used.tokens_hour.add(windows.hour, tokens);
            used.tokens_day.add(windows.day, tokens);
            used.usd_day.add(windows.day, usd);
            used.usd_month.add(windows.month, usd);
        }
    }

    /// What each subject with limits has used at `wall`.
    pub fn used(&self, wall: OffsetDateTime) -> HashMap<Subject, Used> {
        let windows = Windows::at(wall);
        let now = Instant::now();
        let rules = self.rules.load();
        let state = self.state();
        rules
            .iter()
            .map(|(s, limits)| {
                let used = state.get(s).map(|u| u.used(limits, windows, now));
                (s.clone(), used.unwrap_or_default())
            })
            .collect()
    }

    /// Raises each subject's totals to the database's (`rows`: the rollups of this month and
    /// hour), which hold every instance's written records. `hashes_of` names a subject's key
    /// hashes and account ids as the rollups hold them.
    fn absorb(
        &self,
        rows: &[UsageRow],
        wall: OffsetDateTime,
        matches: impl Fn(&Subject, &UsageRow) -> bool,
    ) {
        let windows = Windows::at(wall);
        let today = day_of(wall);
        let hour = hour_of(wall);
        let rules = self.rules.load();
        let mut state = self.state();
        for (subject, limits) in rules.iter() {
            if !limits.counts_tokens() {
                continue;
            }
            let mut totals = Used::default();
            for row in rows.iter().filter(|r| matches(subject, r)) {
                let tokens = counted_tokens(&row.usage);
                if row.period == hour {
                    totals.tokens_this_hour += tokens;
                } else if row.period.len() == today.len() {
                    let usd = self
                        .prices
                        .cost(Some(&row.model), &row.usage)
                        .unwrap_or(0.0);
                    totals.usd_this_month += usd;
                    if row.period == today {
                        totals.tokens_today += tokens;
                        totals.usd_today += usd;
                    }
                }
            }
            let used = state.entry(subject.clone()).or_default();
            used.tokens_hour
                .at_least(windows.hour, totals.tokens_this_hour);
            used.tokens_day.at_least(windows.day, totals.tokens_today);
            used.usd_day.at_least(windows.day, totals.usd_today);
            used.usd_month
                .at_least(windows.month, totals.usd_this_month);
        }
        state.retain(|subject, _| rules.contains_key(subject));
    }
}

/// `subject`'s state, made the first time (its key cloned only then: this runs per request).
fn state_of<'a>(state: &'a mut HashMap<Subject, State>, subject: &Subject) -> &'a mut State {
    if !state.contains_key(subject) {
        state.insert(subject.clone(), State::default());
    }
    state.get_mut(subject).expect("inserted")
}

/// The tokens limits (and the token alerts) count: input, cache writes, output.
pub fn counted_tokens(usage: &Usage) -> u64 {
    usage
        .input_tokens
        .saturating_add(usage.cache_creation_input_tokens)
        .saturating_add(usage.output_tokens)
}

fn start_of_day(date: Date) -> OffsetDateTime {
    date.with_time(Time::MIDNIGHT).assume_utc()
}

fn next_hour(wall: OffsetDateTime) -> OffsetDateTime {
    let wall = wall.to_offset(time::UtcOffset::UTC);
    wall.replace_time(Time::from_hms(wall.hour(), 0, 0).expect("valid")) + time::Duration::HOUR
}

fn next_day(wall: OffsetDateTime) -> OffsetDateTime {
    start_of_day(wall.to_offset(time::UtcOffset::UTC).date()) + time::Duration::DAY
}

fn month_start(wall: OffsetDateTime) -> Date {
    let wall = wall.to_offset(time::UtcOffset::UTC);
    Date::from_calendar_date(wall.year(), wall.month(), 1).expect("the 1st exists")
}

fn next_month(wall: OffsetDateTime) -> OffsetDateTime {
    let first = month_start(wall);
    let (year, month) = match first.month() {
        Month::December => (first.year() + 1, Month::January),
        m => (first.year(), m.next()),
    };
    start_of_day(Date::from_calendar_date(year, month, 1).expect("the 1st exists"))
}

/// Why limits cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Sets `subject`'s limits (replacing all of them; an empty set removes them), after checking
/// the values and that a database key exists. Running servers apply them within [`REFRESH`].
pub async fn save(store: &Store, subject: &Subject, set: &LimitSet) -> Result<(), SaveError> {
    if let Some(why) = set.invalid() {
        return Err(SaveError::Invalid(why));
    }
    if subject.kind == SubjectKind::Key && !subject.id.starts_with(FILE_KEY_PREFIX) {
        client_keys::find(store, &subject.id).await?;
    }
    store
        .set_limits(subject, set)
        .await
        .map_err(KeyError::from)?;
    Ok(())
}

/// Loads the limits and the shared totals once.
pub async fn refresh(
    limiter: &Limiter,
    store: &Store,
    client_keys: &ClientKeys,
    credentials: &Credentials,
) -> Result<(), crate::store::StoreError> {
    let _one_at_a_time = limiter.refreshing.lock().await;
    let rules: HashMap<Subject, LimitSet> = store.limits().await?.into_iter().collect();
    let counts_tokens = rules.values().any(LimitSet::counts_tokens);
    limiter.set_rules(rules);
    if !counts_tokens {
        return Ok(());
    }
    let wall = OffsetDateTime::now_utc();
    let rows = store
        .usage_for_limits(
            &day_of(start_of_day(month_start(wall))),
            Some(&hour_of(wall)),
        )
        .await?;
    let accounts = credentials.snapshot();
    let keys = client_keys.hashes_by_id();
    limiter.absorb(&rows, wall, |subject, row| match subject.kind {
        SubjectKind::Account => accounts
            .by_domain(&subject.id)
            .and_then(|a| a.account_id.as_deref())
            .is_some_and(|id| id == row.account_id),
        SubjectKind::Key => match subject.id.strip_prefix(FILE_KEY_PREFIX) {
            Some(domain) => accounts
                .by_domain(domain)
                .and_then(|a| a.client_key.as_ref())
                .is_some_and(|k| k.hash.to_string() == row.api_key_hash),
            None => keys
                .get(&subject.id)
                .is_some_and(|hash| hash.to_string() == row.api_key_hash),
        },
    });
    Ok(())
}

/// Reloads the limits and the shared totals every [`REFRESH`] until `stop`; a failed load
/// keeps the last ones (and is logged once per failure streak).
pub fn spawn_refresher(
    limiter: Arc<Limiter>,
    store: Store,
    client_keys: Arc<ClientKeys>,
    credentials: Arc<Credentials>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match refresh(&limiter, &store, &client_keys, &credentials).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("limits not reloaded (the last ones stay in force): {e}");
                }
                Err(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key(id: &str) -> Subject {
        Subject {
            kind: SubjectKind::Key,
            id: id.into(),
        }
    }

    fn limiter(subject: &Subject, set: LimitSet) -> Limiter {
        let limiter = Limiter::new(Arc::new(PriceTable::load(std::path::Path::new(
            "/nonexistent",
        ))));
        limiter.set_rules(HashMap::from([(subject.clone(), set)]));
        limiter
    }

    #[test]
    fn requests_per_minute_allow_a_burst_then_pace() {
        let k = key("k1");
        let limiter = limiter(
            &k,
            LimitSet {
                requests_per_minute: Some(2),
                ..LimitSet::default()
            },
        );
        let wall = datetime!(2026-12-03 10:00:30 UTC);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let subjects = [k.clone(), key("other")];
        assert!(limiter.check(&subjects, wall, at(0)).is_ok());
        assert!(
            limiter.check(&subjects, wall, at(0)).is_ok(),
            "a burst of 2"
        );
        assert_eq!(limiter.used(wall)[&k].requests_last_minute, 2);
        let refused = limiter.check(&subjects, wall, at(1)).unwrap_err();
        assert_eq!(refused.limit, "requests_per_minute");
        assert_eq!(refused.value, "2");
        assert_eq!(refused.retry_after, Duration::from_secs(29));
        // Then one every 30 s.
        assert!(limiter.check(&subjects, wall, at(30)).is_ok());
        assert!(limiter.check(&subjects, wall, at(31)).is_err());
        assert!(limiter.check(&subjects, wall, at(60)).is_ok());
        // Unlimited subjects are not tracked.
        assert!(!limiter.state().contains_key(&key("other")));
    }

    #[test]
    fn a_huge_per_minute_limit_costs_no_memory() {
        let mut pace = Pace::default();
        let now = Instant::now();
        for _ in 0..100_000 {
            assert!(pace.wait(1_000_000_000, now).is_zero());
            pace.admit(1_000_000_000, now);
        }
        assert_eq!(pace.used(1_000_000_000, now), 100_000);
    }

    #[test]
    fn the_request_that_crosses_a_token_limit_passes_and_the_next_is_refused_until_the_window_ends()
    {
        let k = key("k1");
        let limiter = limiter(
            &k,
            LimitSet {
                tokens_per_hour: Some(100),
                ..LimitSet::default()
            },
        );
        let wall = datetime!(2026-12-03 10:59:00 UTC);
        let now = Instant::now();
        let usage = Usage {
            input_tokens: 60,
            output_tokens: 30,
            cache_read_input_tokens: 1000,
            ..Usage::default()
        };
        let subjects = [k];
        assert!(limiter.check(&subjects, wall, now).is_ok());
        limiter.charge(&subjects, Some("claude-sonnet-4-5"), &usage, wall);
        assert!(limiter.check(&subjects, wall, now).is_ok(), "90 < 100");
        limiter.charge(&subjects, Some("claude-sonnet-4-5"), &usage, wall);
        let refused = limiter.check(&subjects, wall, now).unwrap_err();
        assert_eq!(refused.limit, "tokens_per_hour");
        assert_eq!(refused.reset, datetime!(2026-12-03 11:00:00 UTC));
        assert_eq!(refused.retry_after, Duration::from_secs(60));
        assert!(
            limiter
                .check(&subjects, datetime!(2026-12-03 11:00:00 UTC), now)
                .is_ok()
        );
    }

    #[test]
    fn dollars_are_priced_and_the_database_total_raises_the_local_one() {
        let k = key("k1");
        let limiter = limiter(
            &k,
            LimitSet {
                usd_per_month: Some(1.0),
                ..LimitSet::default()
            },
        );
        let wall = datetime!(2026-12-31 23:00:00 UTC);
        let million_out = Usage {
            output_tokens: 100_000,
            ..Usage::default()
        };
        // $1.50 at $15 per million output tokens, in another instance's rows.
        let row = UsageRow {
            period: "2026-12-30".into(),
            account_id: String::new(),
            api_key_hash: "h".into(),
            model: "claude-sonnet-4-5".into(),
            usage: million_out,
        };
        let subjects = [k.clone()];
        assert!(limiter.check(&subjects, wall, Instant::now()).is_ok());
        limiter.absorb(&[row], wall, |_, r| r.api_key_hash == "h");
        let refused = limiter.check(&subjects, wall, Instant::now()).unwrap_err();
        assert_eq!(refused.limit, "usd_per_month");
        assert_eq!(refused.value, "1.00");
        assert_eq!(refused.reset, datetime!(2027-01-01 00:00:00 UTC));
        let used = limiter.used(wall)[&k];
        assert!((used.usd_this_month - 1.5).abs() < 1e-9, "{used:?}");
    }
}
