//! `claude-nexus limits list|set|clear`: per client key and per account limits and budgets,
//! in the database, where running servers pick them up within two seconds
//! ([`claude_nexus::limits::REFRESH`]).

use std::str::FromStr;

use anyhow::Context;
use clap::{Args, Subcommand};
use claude_nexus::Config;
use claude_nexus::limits::{self, LimitSet, Subject, SubjectKind};
use claude_nexus::store::Store;

#[derive(Subcommand)]
pub enum LimitsCommand {
    /// Every key and account with limits.
    List,
    /// Set limits of a key or an account; the ones not named stay as they are, `none`
    /// removes one.
    Set(SetArgs),
    /// Remove every limit of a key or an account.
    Clear(Which),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("subject").required(true).args(["key", "account"]))]
pub struct Which {
    /// A client key's id (`keys list`), or `file:<domain>` for a credential file's key.
    #[arg(long)]
    key: Option<String>,
    /// An account's domain (its credential file's name).
    #[arg(long)]
    account: Option<String>,
}

impl Which {
    fn subject(self) -> Subject {
        match (self.key, self.account) {
            (Some(id), _) => Subject {
                kind: SubjectKind::Key,
                id,
            },
            (None, Some(domain)) => Subject {
                kind: SubjectKind::Account,
                id: domain.to_ascii_lowercase(),
            },
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Args)]
pub struct SetArgs {
    #[command(flatten)]
    which: Which,
    /// Requests per minute (per server): a burst of up to this many, then one every minute/N.
    #[arg(long, value_parser = setting::<u64>)]
    requests_per_minute: Option<Setting<u64>>,
    /// Tokens (input, cache writes, output) per UTC hour.
    #[arg(long, value_parser = setting::<u64>)]
    tokens_per_hour: Option<Setting<u64>>,
    /// Tokens per UTC day.
    #[arg(long, value_parser = setting::<u64>)]
    tokens_per_day: Option<Setting<u64>>,
    /// Dollars per UTC day (the dashboard's prices).
    #[arg(long, value_parser = setting::<f64>)]
    usd_per_day: Option<Setting<f64>>,
    /// Dollars per UTC month.
    #[arg(long, value_parser = setting::<f64>)]
    usd_per_month: Option<Setting<f64>>,
}

/// A new value, or `none` to remove the limit.
#[derive(Clone, Copy)]
pub enum Setting<T> {
    To(T),
    Removed,
}

fn setting<T: FromStr>(text: &str) -> Result<Setting<T>, String> {
    if text == "none" {
        return Ok(Setting::Removed);
    }
    text.parse()
        .map(Setting::To)
        .map_err(|_| format!("{text:?}: a number, or none"))
}

fn apply<T>(current: &mut Option<T>, change: Option<Setting<T>>) {
    match change {
        Some(Setting::To(value)) => *current = Some(value),
        Some(Setting::Removed) => *current = None,
        None => {}
    }
}

pub async fn run(config: &Config, command: LimitsCommand) -> anyhow::Result<()> {
    let store = Store::open_configured(config).await?;
    let result = match command {
        LimitsCommand::List => list(&store).await,
        LimitsCommand::Set(args) => set(&store, args).await,
        LimitsCommand::Clear(which) => {
            let subject = which.subject();
            if store.delete_limits(&subject).await? {
                eprintln!("{subject}: no limits now");
            } else {
                eprintln!("{subject} had no limits");
            }
            Ok(())
        }
    };
    store.close().await;
    result
}

async fn current(store: &Store, subject: &Subject) -> anyhow::Result<LimitSet> {
    Ok(store
        .limits()
        .await?
        .into_iter()
        .find(|(s, _)| s == subject)
        .map(|(_, set)| set)
        .unwrap_or_default())
}

async fn set(store: &Store, args: SetArgs) -> anyhow::Result<()> {
    let subject = args.which.subject();
    let mut set = current(store, &subject).await?;
    apply(&mut set.requests_per_minute, args.requests_per_minute);
    apply(&mut set.tokens_per_hour, args.tokens_per_hour);
    apply(&mut set.tokens_per_day, args.tokens_per_day);
    apply(&mut set.usd_per_day, args.usd_per_day);
    apply(&mut set.usd_per_month, args.usd_per_month);
    limits::save(store, &subject, &set)
        .await
        .with_context(|| format!("cannot set the limits of {subject}"))?;
    eprintln!(
        "{subject}: {} (running servers apply it within {} s)",
        describe(&set),
        limits::REFRESH.as_secs()
    );
    Ok(())
}

async fn list(store: &Store) -> anyhow::Result<()> {
    let all = store.limits().await?;
    if all.is_empty() {
        eprintln!("no limits set");
    }
    for (subject, set) in all {
        println!("{subject}\t{}", describe(&set));
    }
    Ok(())
}

/// `5 requests/min, 100000 tokens/day, $5.00/month`.
fn describe(set: &LimitSet) -> String {
    let counts = [
        (set.requests_per_minute, "requests/min"),
        (set.tokens_per_hour, "tokens/hour"),
        (set.tokens_per_day, "tokens/day"),
    ];
    let dollars = [(set.usd_per_day, "day"), (set.usd_per_month, "month")];
    let parts: Vec<String> = counts
        .iter()
        .filter_map(|(n, unit)| n.map(|n| format!("{n} {unit}")))
        .chain(
            dollars
                .iter()
                .filter_map(|(usd, per)| usd.map(|usd| format!("${usd:.2}/{per}"))),
        )
        .collect();
    if parts.is_empty() {
        "no limits".to_string()
    } else {
        parts.join(", ")
    }
}
