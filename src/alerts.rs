//! Alerts: what a user should know without watching the dashboard, sent to Slack webhooks
//! (`SLACK_WEBHOOK_URL` for everything, a credential file's `slack` block for its domain).
//!
//! Six rules (`config::AlertsConfig`): a burst of failed authentications per domain and a
//! sustained upstream error rate, counted from the records as the writer receives them
//! ([`Alerts::observe`]); an account's tokens today above a threshold or a multiple of its
//! daily average, an OAuth account that needs a login or fails to refresh, a subscription
//! window nearly used up, and a client key about to expire, checked every
//! `ALERT_CHECK_INTERVAL` by [`spawn_checker`].
//!
//! Private by default: an alert carries counts, names, key ids and addresses, never a prompt
//! or an answer. No storms: each rule fires at most once per `ALERT_COOLDOWN` per subject, and
//! the next alert says how many were suppressed. Delivery ([`deliver`]) happens on its own
//! task with retries; nothing here waits for it, and the request path never sees alerts. The
//! last alerts, sent or suppressed, are kept for the Security page.

pub mod deliver;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::accounts::client_keys::ClientKeys;
use crate::accounts::credentials::Credentials;
use crate::accounts::oauth::Tokens;
use crate::accounts::oauth::usage_window::UsageWindows;
use crate::config::{AlertsConfig, check_webhook};
use crate::record::{Record, iso};
use crate::store::{Store, day_of};
use deliver::{Outgoing, Target};

/// Alerts kept for the Security page.
const RECENT: usize = 50;
/// Alerts waiting for delivery at most; past it, new ones are logged and counted as failed.
const OUTBOX: usize = 256;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    AuthFailures,
    TokenSpike,
    OAuth,
    UpstreamErrors,
    PlanWindow,
    KeyExpiry,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::AuthFailures,
        Kind::TokenSpike,
        Kind::OAuth,
        Kind::UpstreamErrors,
        Kind::PlanWindow,
        Kind::KeyExpiry,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::AuthFailures => "auth_failures",
            Kind::TokenSpike => "token_spike",
            Kind::OAuth => "oauth",
            Kind::UpstreamErrors => "upstream_errors",
            Kind::PlanWindow => "plan_window",
            Kind::KeyExpiry => "key_expiry",
        }
    }

    /// A heading for a notification.
    pub fn title(self) -> &'static str {
        match self {
            Kind::AuthFailures => "Failed authentications",
            Kind::TokenSpike => "Token use",
            Kind::OAuth => "Subscription login",
            Kind::UpstreamErrors => "Upstream errors",
            Kind::PlanWindow => "Plan usage",
            Kind::KeyExpiry => "Client key expiring",
        }
    }

    /// The rule in words, with the configured thresholds.
    pub fn rule(self, c: &AlertsConfig) -> String {
        let off = "off";
        match self {
            Kind::AuthFailures if c.auth_failures == 0 => off.into(),
            Kind::AuthFailures => format!(
                "more than {} failed authentications on one domain within {}",
                c.auth_failures,
                humantime::format_duration(c.auth_window)
            ),
            Kind::TokenSpike => {
                let mut parts = Vec::new();
                if let Some(n) = c.daily_tokens {
                    parts.push(format!("more than {n} tokens today"));
                }
                if c.spike_factor > 0.0 {
                    parts.push(format!(
                        "more than {}× its daily average of the 7 days before",
                        c.spike_factor
                    ));
                }
                if parts.is_empty() {
                    off.into()
                } else {
                    format!("an account uses {}", parts.join(", or "))
                }
            }
            Kind::OAuth => "an OAuth account needs a new login or fails to refresh".into(),
            Kind::UpstreamErrors if c.error_rate == 0.0 => off.into(),
            Kind::UpstreamErrors => format!(
                "{:.0}% or more of the upstream's answers are errors within {} (at least {} requests)",
                c.error_rate * 100.0,
                humantime::format_duration(c.error_window),
                c.error_min_requests
            ),
            Kind::PlanWindow if c.plan_window_percent == 0.0 => off.into(),
            Kind::PlanWindow => format!(
                "a subscription's 5-hour or 7-day window is {:.0}% used or more",
                c.plan_window_percent
            ),
            Kind::KeyExpiry if c.key_expiry.is_zero() => off.into(),
            Kind::KeyExpiry => format!(
                "a client key expires within {}",
                humantime::format_duration(c.key_expiry)
            ),
        }
    }
}

/// One alert, as the Security page lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertEntry {
    #[serde(skip)]
    pub id: u64,
    /// ISO-8601 UTC.
    pub at: String,
    pub kind: &'static str,
    /// A heading for a notification ([`Kind::title`]).
    pub title: &'static str,
    pub subject: String,
    pub text: String,
    /// `sending`, `sent`, `failed`, `not_sent` (no webhook), or `suppressed` (cooldown).
    pub outcome: &'static str,
    /// For `suppressed`: how many times since the last one sent (`at` is the latest).
    pub times: u64,
}

/// Counters for the metrics.
#[derive(Debug, Default)]
pub struct AlertStats {
    pub sent: AtomicU64,
    pub suppressed: AtomicU64,
    pub failed: AtomicU64,
}

struct Cooldown {
    sent_at: Instant,
    suppressed: u64,
}

#[derive(Default)]
struct State {
    /// Failed authentications per domain, within the window (at most the threshold + 1).
    auth: HashMap<String, VecDeque<Instant>>,
    /// Upstream answers per second: (second, answers, errors), within the window.
    upstream: VecDeque<(u64, u64, u64)>,
    cooldowns: HashMap<(Kind, String), Cooldown>,
    recent: VecDeque<AlertEntry>,
    next_id: u64,
}

/// The alert rules' state, the cooldowns, and the way out to the webhooks.
pub struct Alerts {
    config: AlertsConfig,
    credentials: Arc<Credentials>,
    /// Where the dashboard is, for the links in alerts.
    dashboard: String,
    outbox: mpsc::Sender<Outgoing>,
    /// Each alert that goes out (past its cooldown), for the embedder's notifications and
    /// the dashboard's live feed.
    raised: broadcast::Sender<AlertEntry>,
    state: Mutex<State>,
    started: Instant,
    pub stats: AlertStats,
}

impl Alerts {
    pub fn new(
        config: AlertsConfig,
        credentials: Arc<Credentials>,
        dashboard: String,
    ) -> (Alerts, mpsc::Receiver<Outgoing>) {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let alerts = Alerts {
            config,
            credentials,
            dashboard,
            outbox,
            raised: broadcast::channel(64).0,
            state: Mutex::default(),
            started: Instant::now(),
            stats: AlertStats::default(),
        };
        (alerts, rx)
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each alert from now on that goes out (suppressed ones do not), webhooks or none.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEntry> {
        self.raised.subscribe()
    }

    /// The last alerts, newest first.
    pub fn recent(&self) -> Vec<AlertEntry> {
        self.state().recent.iter().rev().cloned().collect()
    }

    /// Counts failed authentications and upstream answers in `records` (the writer calls
    /// this for each batch), and raises the alerts they cross.
    pub fn observe(&self, records: &[Record]) {
        let c = &self.config;
        if c.auth_failures == 0 && c.error_rate == 0.0 {
            return;
        }
        let now = Instant::now();
        let second = now.duration_since(self.started).as_secs();
        let mut raised = Vec::new();
        {
            let mut state = self.state();
            for record in records {
                if c.auth_failures > 0 && failed_authentication(record) {
                    let failures = state.auth.entry(record.domain.clone()).or_default();
                    failures.push_back(now);
                    while failures
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > c.auth_window)
                        || failures.len() > c.auth_failures + 1
                    {
                        failures.pop_front();
                    }
                    if failures.len() > c.auth_failures {
                        let from = record
                            .client_ip
                            .map(|ip| format!(" (the latest from {ip})"))
                            .unwrap_or_default();
                        raised.push((
                            Kind::AuthFailures,
                            record.domain.clone(),
                            Some(record.domain.clone()),
                            format!(
                                "more than {} failed authentications on {} within {}{from}",
                                c.auth_failures,
                                record.domain,
                                humantime::format_duration(c.auth_window)
                            ),
                        ));
                    }
                }
                if c.error_rate > 0.0
                    && let Some(error) = upstream_error(record)
                {
                    let window = c.error_window.as_secs().max(1);
                    let upstream = &mut state.upstream;
                    match upstream.back_mut() {
                        Some((s, n, e)) if *s == second => {
                            *n += 1;
                            *e += u64::from(error);
                        }
                        _ => upstream.push_back((second, 1, u64::from(error))),
                    }
                    while upstream
                        .front()
                        .is_some_and(|(s, ..)| second.saturating_sub(*s) >= window)
                    {
                        upstream.pop_front();
                    }
                    let (n, e) = upstream
                        .iter()
                        .fold((0, 0), |(n, e), (_, dn, de)| (n + dn, e + de));
                    if error
                        && n >= c.error_min_requests as u64
                        && e as f64 >= c.error_rate * n as f64
                    {
                        raised.push((
                            Kind::UpstreamErrors,
                            "upstream".to_string(),
                            None,
                            format!(
                                "{e} of the last {n} upstream answers within {} were errors (the latest: status {})",
                                humantime::format_duration(c.error_window),
                                record.status
                            ),
                        ));
                    }
                }
            }
        }
        for (kind, subject, domain, text) in raised {
            self.raise(kind, subject, domain.as_deref(), text);
        }
    }

    /// Sends an alert about `subject`, unless one of its kind about it went out within the
    /// cooldown (then it is counted, and the next one that goes out says so).
    pub fn raise(&self, kind: Kind, subject: String, domain: Option<&str>, text: String) {
        let now = Instant::now();
        let mut state = self.state();
        let key = (kind, subject.clone());
        let suppressed = match state.cooldowns.get_mut(&key) {
            Some(c) if now.duration_since(c.sent_at) < self.config.cooldown => {
                c.suppressed += 1;
                self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                // One entry per subject counts its suppressions, so that a condition that
                // lasts does not push everything else off the list.
                let name = kind.name();
                let latest = state
                    .recent
                    .iter_mut()
                    .rev()
                    .find(|e| e.kind == name && e.subject == subject);
                match latest {
                    Some(e) if e.outcome == "suppressed" => {
                        e.times += 1;
                        e.at = iso(OffsetDateTime::now_utc());
                        e.text = text;
                    }
                    _ => {
                        let entry = self.entry(&mut state, kind, subject, text, "suppressed");
                        push(&mut state, entry);
                    }
                }
                return;
            }
            Some(c) => c.suppressed,
            None => 0,
        };
        state.cooldowns.insert(
            key,
            Cooldown {
                sent_at: now,
                suppressed: 0,
            },
        );
        let mut text = text;
        if suppressed > 0 {
            text.push_str(&format!(
                " ({suppressed} more like it suppressed since the last alert)"
            ));
        }
        let targets = self.targets(domain);
        let outcome = if targets.is_empty() {
            "not_sent"
        } else {
            "sending"
        };
        let entry = self.entry(&mut state, kind, subject, text, outcome);
        tracing::warn!(alert = kind.name(), subject = %entry.subject, "{}", entry.text);
        let id = entry.id;
        let message = format!(
            "*Claude Nexus*: {} (<http://{}/security|Security page>)",
            entry.text, self.dashboard
        );
        let _ = self.raised.send(entry.clone());
        push(&mut state, entry);
        drop(state);
        if targets.is_empty() {
            return;
        }
        let outgoing = Outgoing {
            id,
            text: message,
            targets,
        };
        if self.outbox.try_send(outgoing).is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.set_outcome(id, "failed");
            tracing::warn!(
                alert = kind.name(),
                "alert not sent: {OUTBOX} alerts already wait for delivery"
            );
        }
    }

    fn entry(
        &self,
        state: &mut State,
        kind: Kind,
        subject: String,
        text: String,
        outcome: &'static str,
    ) -> AlertEntry {
        state.next_id += 1;
        AlertEntry {
            id: state.next_id,
            at: iso(OffsetDateTime::now_utc()),
            kind: kind.name(),
            title: kind.title(),
            subject,
            text,
            outcome,
            times: 1,
        }
    }

    /// Records how the delivery of alert `id` ended.
    fn set_outcome(&self, id: u64, outcome: &'static str) {
        if let Some(entry) = self.state().recent.iter_mut().find(|e| e.id == id) {
            entry.outcome = outcome;
        }
    }

    /// The global webhook, and `domain`'s credential file's when it has one (a refused URL is
    /// logged, never quoted).
    fn targets(&self, domain: Option<&str>) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .config
            .webhook
            .iter()
            .map(|url| Target {
                url: url.clone(),
                channel: None,
                username: None,
                icon_emoji: None,
            })
            .collect();
        let accounts = self.credentials.snapshot();
        if let Some(slack) = domain
            .and_then(|d| accounts.by_domain(d))
            .and_then(|a| a.slack.clone())
        {
            use secrecy::ExposeSecret;
            match check_webhook(
                slack.webhook_url.expose_secret(),
                self.config.allow_insecure_webhooks,
            ) {
                Ok(_) => targets.push(Target {
                    url: slack.webhook_url,
                    channel: slack.channel,
                    username: slack.username,
                    icon_emoji: slack.icon_emoji,
                }),
                Err(why) => tracing::warn!(
                    domain = domain.unwrap_or_default(),
                    "the credential file's slack webhook is not used: {why}"
                ),
            }
        }
        targets
    }

    /// Which webhooks are set: the global one, and the domains whose files have one.
    pub fn webhooks(&self) -> (bool, Vec<String>) {
        let accounts = self.credentials.snapshot();
        let mut domains: Vec<String> = accounts
            .iter()
            .filter(|a| a.slack.is_some())
            .map(|a| a.domain.clone())
            .collect();
        domains.sort();
        (self.config.webhook.is_some(), domains)
    }
}

fn push(state: &mut State, entry: AlertEntry) {
    if state.recent.len() == RECENT {
        state.recent.pop_front();
    }
    state.recent.push_back(entry);
}

/// A request the proxy refused for its client key (missing, wrong, revoked, expired): a 401
/// before any account was chosen.
fn failed_authentication(record: &Record) -> bool {
    record.status == 401 && record.account_id.is_none() && record.timing.is_none()
}

/// For a request that went upstream: whether the upstream failed it (a 5xx, or no answer).
fn upstream_error(record: &Record) -> Option<bool> {
    if record.timing.is_some() {
        return Some(record.status >= 500);
    }
    // The proxy's own 502 and 504: the upstream unreachable or silent.
    (record.account_id.is_some() && matches!(record.status, 502 | 504)).then_some(true)
}

/// What the checker reads.
pub struct Sources {
    pub store: Store,
    pub tokens: Arc<Tokens>,
    pub usage_windows: Arc<UsageWindows>,
    pub client_keys: Arc<ClientKeys>,
}

/// Checks the rules that read state every `ALERT_CHECK_INTERVAL` until `stop`.
pub fn spawn_checker(
    alerts: Arc<Alerts>,
    sources: Sources,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(alerts.config.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            alerts.check(&sources).await;
        }
    })
}

impl Alerts {
    /// One pass of the state rules.
    pub async fn check(&self, sources: &Sources) {
        self.check_tokens(&sources.store).await;
        self.check_oauth(&sources.tokens);
        self.check_plan_windows(&sources.usage_windows);
        self.check_key_expiry(&sources.client_keys);
    }

    async fn check_tokens(&self, store: &Store) {
        let c = &self.config;
        if c.daily_tokens.is_none() && c.spike_factor == 0.0 {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let today = day_of(now);
        let rows = match store
            .usage_for_limits(&day_of(now - time::Duration::days(7)), None)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!("token alerts not checked: {e}");
                return;
            }
        };
        // Per account: today's tokens and those of the 7 days before.
        let mut totals: HashMap<&str, (u64, u64)> = HashMap::new();
        for row in rows.iter().filter(|r| !r.account_id.is_empty()) {
            let tokens = crate::limits::counted_tokens(&row.usage);
            let total = totals.entry(&row.account_id).or_default();
            if row.period == today {
                total.0 += tokens;
            } else {
                total.1 += tokens;
            }
        }
        let accounts = self.credentials.snapshot();
        for (account_id, (today, before)) in totals {
            let average = before as f64 / 7.0;
            let text = if c.daily_tokens.is_some_and(|max| today > max) {
                format!(
                    "account {account_id} used {today} tokens today, more than the {} of ALERT_DAILY_TOKENS",
                    c.daily_tokens.unwrap_or_default()
                )
            } else if c.spike_factor > 0.0 && before > 0 && today as f64 > c.spike_factor * average
            {
                format!(
                    "account {account_id} used {today} tokens today, {:.1}× its daily average of the 7 days before ({average:.0})",
                    today as f64 / average
                )
            } else {
                continue;
            };
            let domain = accounts
                .iter()
                .find(|a| a.account_id.as_deref() == Some(account_id))
                .map(|a| a.domain.clone());
            self.raise(
                Kind::TokenSpike,
                account_id.to_string(),
                domain.as_deref(),
                text,
            );
        }
    }

    fn check_oauth(&self, tokens: &Tokens) {
        for status in tokens.statuses() {
            let domain = status.domain.clone();
            let text = match status.status {
                "needs_login" => format!(
                    "OAuth account {domain} needs a new login: claude-nexus oauth login {domain}"
                ),
                _ if status.consecutive_failures > 0 => format!(
                    "OAuth account {domain} fails to refresh its token ({} failures in a row)",
                    status.consecutive_failures
                ),
                _ => continue,
            };
            self.raise(Kind::OAuth, domain.clone(), Some(&domain), text);
        }
    }

    fn check_plan_windows(&self, windows: &UsageWindows) {
        let threshold = self.config.plan_window_percent;
        if threshold == 0.0 {
            return;
        }
        for account in self.credentials.snapshot().iter() {
            let Some(known) = windows.get(&account.domain) else {
                continue;
            };
            let from_headers = known.headers.as_ref().map(|h| {
                [
                    ("5-hour", h.five_hour.utilization.map(|u| u * 100.0)),
                    ("7-day", h.seven_day.utilization.map(|u| u * 100.0)),
                ]
            });
            let from_plan = known.plan.as_ref().map(|p| {
                [
                    ("5-hour", p.five_hour.as_ref().and_then(|w| w.utilization)),
                    ("7-day", p.seven_day.as_ref().and_then(|w| w.utilization)),
                ]
            });
            for (window, used) in from_headers.into_iter().chain(from_plan).flatten() {
                if let Some(used) = used.filter(|u| *u >= threshold) {
                    self.raise(
                        Kind::PlanWindow,
                        format!("{} {window}", account.domain),
                        Some(&account.domain),
                        format!(
                            "{} has used {used:.0}% of its {window} window",
                            account.domain
                        ),
                    );
                }
            }
        }
    }

    fn check_key_expiry(&self, keys: &ClientKeys) {
        let within = self.config.key_expiry;
        if within.is_zero() {
            return;
        }
        let now = OffsetDateTime::now_utc();
        for key in keys.all() {
            let Some(expires) = key.expires_at.filter(|at| *at > now) else {
                continue;
            };
            if key.revoked || expires - now > within {
                continue;
            }
            self.raise(
                Kind::KeyExpiry,
                key.id.clone(),
                Some(&key.account),
                format!(
                    "client key {} of {} expires at {}: rotate it (claude-nexus keys rotate {})",
                    key.id,
                    key.account,
                    iso(expires),
                    key.id
                ),
            );
        }
    }
}

/// How long after `attempt` failures the next delivery attempt waits (none after the last).
pub fn retry_delay(attempt: u32) -> Option<Duration> {
    match attempt {
        1 => Some(Duration::from_secs(1)),
        2 => Some(Duration::from_secs(5)),
        3 => Some(Duration::from_secs(30)),
        _ => None,
    }
}
