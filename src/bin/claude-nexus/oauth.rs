//! `claude-nexus oauth login|status|refresh`: Claude Pro/Max accounts from the command line.
//! The login flow, the running proxy's status and the refresh decision are in
//! `claude_nexus::accounts::oauth`; this prints them.

use std::sync::Arc;

use clap::Subcommand;
use claude_nexus::Config;
use claude_nexus::accounts::credentials::{Credentials, UpstreamCredential};
use claude_nexus::accounts::oauth::login::{self, PendingLogin};
use claude_nexus::accounts::oauth::running_proxy::{self, RefreshedBy};
use claude_nexus::keys::KeySalt;
use secrecy::{ExposeSecret, SecretString};

#[derive(Subcommand)]
pub enum OauthCommand {
    /// Log in to a Claude Pro/Max account and save it as <domain>.credentials.json in
    /// CREDENTIALS_DIR. Prints the URL to open, then reads the pasted code#state from stdin.
    Login {
        domain: String,
        /// Only print the URL; do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Show each OAuth account's expiry, scopes and (from a running proxy) last refresh.
    Status { domain: Option<String> },
    /// Refresh an account's token now and save it.
    Refresh { domain: String },
}

pub async fn run(config: &Config, command: OauthCommand) -> anyhow::Result<()> {
    match command {
        OauthCommand::Login { domain, no_browser } => login(config, &domain, no_browser).await,
        OauthCommand::Status { domain } => status(config, domain.as_deref()).await,
        OauthCommand::Refresh { domain } => refresh(config, &domain).await,
    }
}

async fn login(config: &Config, domain: &str, no_browser: bool) -> anyhow::Result<()> {
    let file = login::credential_file(&config.credentials_dir, domain)?;
    let pending = PendingLogin::start(&config.oauth)?;
    eprintln!("Open this URL, log in, and paste the code shown (code#state) here:");
    println!("{}", pending.authorize_url());
    if !no_browser {
        open_browser(pending.authorize_url().as_str());
    }
    eprint!("Code: ");
    let mut pasted = String::new();
    std::io::stdin().read_line(&mut pasted)?;
    let http = claude_nexus::http_client::client()?;
    let granted = pending.finish(&http, &config.oauth, &pasted).await?;
    let created = login::save(&config.credentials_dir, domain, &granted)?;
    println!("saved {}", file.display());
    if let Some(key) = created {
        println!(
            "client key (shown once; it is in the file): {}",
            key.expose_secret()
        );
    }
    Ok(())
}

/// Best effort: a desktop session's opener, never an error.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

async fn status(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    let salt = Arc::new(KeySalt::from_secret_string(&SecretString::from("status")));
    let (credentials, errors) = Credentials::load(&config.credentials_dir, salt);
    for error in &errors {
        eprintln!("warning: {error}");
    }
    // The last refresh result lives in the running proxy, when there is one.
    let base = running_proxy::proxy_base(config);
    let http = claude_nexus::http_client::client()?;
    let live = running_proxy::running_proxy_status(&http, &base).await;
    let snapshot = credentials.snapshot();
    let mut accounts: Vec<_> = snapshot
        .iter()
        .filter(|a| only.is_none_or(|d| d.eq_ignore_ascii_case(&a.domain)))
        .filter_map(|a| match &a.credential {
            UpstreamCredential::OAuth(oauth) => Some((a, oauth)),
            _ => None,
        })
        .collect();
    accounts.sort_by(|a, b| a.0.domain.cmp(&b.0.domain));
    if accounts.is_empty() {
        anyhow::bail!(
            "no OAuth account{} in {}",
            only.map(|d| format!(" for {d}")).unwrap_or_default(),
            config.credentials_dir.display()
        );
    }
    for (account, oauth) in accounts {
        println!(
            "{} ({})",
            account.domain,
            account.account_id.as_deref().unwrap_or("no accountId")
        );
        println!("  expires:      {}", describe_expiry(oauth.expires_at));
        println!("  scopes:       {}", oauth.scopes.join(" "));
        match live.as_ref().and_then(|m| m.account(&account.domain)) {
            Some(s) => {
                println!("  status:       {}", s.status);
                match &s.last_refresh {
                    Some(l) => println!(
                        "  last refresh: {} {} ({})",
                        l.at,
                        if l.ok { "ok" } else { "failed" },
                        l.detail
                    ),
                    None => println!("  last refresh: none since the proxy started"),
                }
            }
            None => println!("  last refresh: unknown (no proxy answering at {base})"),
        }
    }
    Ok(())
}

async fn refresh(config: &Config, domain: &str) -> anyhow::Result<()> {
    let http = claude_nexus::http_client::client()?;
    let refreshed = running_proxy::refresh(config, &http, domain).await?;
    let by = match &refreshed.by {
        RefreshedBy::Proxy(base) => format!(" (by the proxy at {base})"),
        RefreshedBy::File => String::new(),
    };
    println!(
        "refreshed {}{by}; expires {}",
        refreshed.domain,
        describe_expiry(refreshed.expires_at)
    );
    Ok(())
}

fn describe_expiry(expires_at: Option<i64>) -> String {
    let Some(ms) = expires_at else {
        return "unknown (no expiresAt)".to_string();
    };
    let at = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string());
    let left = ms - claude_nexus::accounts::oauth::endpoint::unix_ms_now();
    let span =
        humantime::format_duration(std::time::Duration::from_secs(left.unsigned_abs() / 1000));
    if left >= 0 {
        format!("{at} (in {span})")
    } else {
        format!("{at} (expired {span} ago)")
    }
}
