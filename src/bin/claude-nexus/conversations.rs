//! `claude-nexus conversations relink [--since …]`: the conversation links recomputed from
//! stored bodies (rows written before linking existed, or after a rule changed), in batches;
//! a run stopped midway resumes with `--since` set to the last time it printed.

use clap::Subcommand;
use claude_nexus::Config;
use claude_nexus::crypto;
use claude_nexus::recorder::linker::relink;
use claude_nexus::secrets::Keychain;
use claude_nexus::store::Store;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Subcommand)]
pub enum ConversationsCommand {
    /// Recompute the links of the Messages API requests with stored bodies.
    Relink {
        /// Only requests from this time on (RFC 3339, like 2026-12-01T00:00:00Z).
        #[arg(long, value_parser = rfc3339)]
        since: Option<OffsetDateTime>,
        /// Requests per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
}

fn rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("expected RFC 3339, like 2026-12-01T00:00:00Z ({e})"))
}

pub async fn run(config: &Config, command: ConversationsCommand) -> anyhow::Result<()> {
    let ConversationsCommand::Relink { since, batch } = command;
    // The bodies are sealed with the data key the server uses.
    let key = crypto::resolve(
        config.storage_encryption_key.as_ref(),
        &Keychain,
        &config.data_dir,
        false,
    )?;
    let store = Store::open_configured(config)
        .await?
        .with_data_key(key.map(|(key, _)| key));
    let report = relink(&store, since, batch.max(1), |r| {
        if let Some(last) = r.last {
            eprintln!(
                "{} requests read, {} linked; up to {}",
                r.requests,
                r.linked,
                claude_nexus::record::iso(last)
            );
        }
    })
    .await;
    store.close().await;
    let report = report?;
    println!(
        "relinked {} of {} Messages API requests (the others have no stored body)",
        report.linked, report.requests
    );
    Ok(())
}
