//! `claude-nexus keys create|list|revoke|rotate`: the client key lifecycle from the command
//! line. The keys live in the database; a running proxy applies a change within half a second,
//! and these commands return after [`client_keys::SETTLE`], when it is in effect.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use claude_nexus::Config;
use claude_nexus::accounts::client_keys::{self, FILE_KEY_PREFIX, NewKey};
use claude_nexus::accounts::credentials;
use claude_nexus::store::{ClientKeyRow, Store};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

#[derive(Args)]
pub struct CreateArgs {
    /// The account (credential file domain) the key belongs to.
    #[arg(long)]
    account: String,
    /// A name to recognise the key by ("laptop", "ci").
    #[arg(long)]
    label: Option<String>,
    /// Lifetime, e.g. 90d, 12h, 2w (default: never expires).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this account's keys.
    #[arg(long)]
    account: Option<String>,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "all"]))]
pub struct RevokeArgs {
    /// The key to revoke (its id, from `keys list`).
    id: Option<String>,
    /// Revoke every key (incident response); also removes plaintext client_api_key entries
    /// from the credential files.
    #[arg(long)]
    all: bool,
    /// With --all: only this account.
    #[arg(long, requires = "all")]
    account: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
pub struct RotateArgs {
    /// The key to replace (its id, from `keys list`).
    id: String,
    /// Lifetime of the new key (default: the old key's lifetime, if it had one).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
}

fn salt(config: &Config) -> anyhow::Result<claude_nexus::keys::KeySalt> {
    client_keys::salt(config).context("cannot read or create the API key salt")
}

pub async fn create(config: &Config, args: CreateArgs) -> anyhow::Result<()> {
    let store = Store::open_configured(config).await?;
    let account = args.account.to_ascii_lowercase();
    let file = config
        .credentials_dir
        .join(format!("{account}{}", credentials::FILE_SUFFIX));
    if !file.is_file() {
        eprintln!(
            "warning: no credential file {} yet; the key works once it exists",
            file.display()
        );
    }
    let created = client_keys::create(
        &store,
        &salt(config)?,
        &NewKey {
            account: &account,
            label: args.label.as_deref(),
            expires_in: args.expires,
            rotated_from: None,
        },
    )
    .await?;
    store.close().await;
    tokio::time::sleep(client_keys::SETTLE).await;
    describe_new(&created.row);
    println!("{}", created.key.expose_secret());
    Ok(())
}

/// Details of a new key on stderr; the key itself goes alone to stdout, for `$(...)`.
fn describe_new(row: &ClientKeyRow) {
    eprintln!(
        "created client key {} ({}) for {}{}; expires {}",
        row.id,
        client_keys::display_prefix(&row.prefix),
        row.account,
        row.label
            .as_deref()
            .map(|l| format!(", label {l:?}"))
            .unwrap_or_default(),
        row.expires_at.map_or("never".to_string(), when)
    );
    eprintln!("the key is shown once, below; only its salted hash is stored:");
}

pub async fn rotate(config: &Config, args: RotateArgs) -> anyhow::Result<()> {
    let store = Store::open_configured(config).await?;
    let (old, created) =
        client_keys::rotate(&store, &salt(config)?, &args.id, args.expires).await?;
    store.close().await;
    tokio::time::sleep(client_keys::SETTLE).await;
    describe_new(&created.row);
    println!("{}", created.key.expose_secret());
    eprintln!(
        "{} stays valid: move your clients to the new key, watch `claude-nexus keys list` until \
         {} is no longer used, then `claude-nexus keys revoke {}`",
        old.id, old.id, old.id
    );
    Ok(())
}

pub async fn list(config: &Config, args: ListArgs) -> anyhow::Result<()> {
    let store = Store::open_configured(config).await?;
    let account = args.account.map(|a| a.to_ascii_lowercase());
    let now = OffsetDateTime::now_utc();
    let mut rows: Vec<[String; 8]> = Vec::new();
    for key in store.client_keys(account.as_deref()).await? {
        let status = if key.revoked_at.is_some() {
            "revoked".to_string()
        } else if key.expires_at.is_some_and(|at| at <= now) {
            "expired".to_string()
        } else {
            "active".to_string()
        };
        let status = match &key.rotated_from {
            Some(from) => format!("{status} (replaces {from})"),
            None => status,
        };
        rows.push([
            key.id,
            client_keys::display_prefix(&key.prefix),
            key.label.unwrap_or_else(|| "-".into()),
            key.account,
            when(key.created_at),
            key.last_used_at.map_or("never".into(), |at| ago(at, now)),
            key.expires_at.map_or("never".into(), when),
            status,
        ]);
    }
    let salt = salt(config)?;
    for (file, domain, key) in file_keys(config)? {
        if account.as_ref().is_some_and(|a| *a != domain) {
            continue;
        }
        let id = format!("{FILE_KEY_PREFIX}{domain}");
        let last = store
            .last_request_with_key(&salt.hash(key.expose_secret()))
            .await?;
        let created = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .map(|t| when(OffsetDateTime::from(t)))
            .unwrap_or_else(|_| "?".into());
        rows.push([
            id,
            client_keys::display_prefix(&client_keys::prefix_of(key.expose_secret())),
            "-".into(),
            domain,
            created,
            last.map_or("never".into(), |at| ago(at, now)),
            "never".into(),
            "active (plaintext in file)".into(),
        ]);
    }
    store.close().await;
    if rows.is_empty() {
        println!("no client keys; create one with `claude-nexus keys create --account <domain>`");
        return Ok(());
    }
    let header = [
        "ID",
        "PREFIX",
        "LABEL",
        "ACCOUNT",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ]
    .map(String::from);
    let mut widths = [0usize; 8];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Each credential file with a plaintext `client_api_key`: the file, its domain and the key.
fn file_keys(config: &Config) -> anyhow::Result<Vec<(PathBuf, String, SecretString)>> {
    let files = match credentials::list_files(&config.credentials_dir) {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("{}", config.credentials_dir.display()));
        }
    };
    let mut keys = Vec::new();
    for file in files {
        // A file that cannot be read or parsed has no key to show.
        if let Ok(Some(key)) = credentials::read_client_key(&file) {
            let domain = credentials::domain_of(&file);
            keys.push((file, domain, key));
        }
    }
    Ok(keys)
}

pub async fn revoke(config: &Config, args: RevokeArgs) -> anyhow::Result<()> {
    let store = Store::open_configured(config).await?;
    let now = OffsetDateTime::now_utc();
    if let Some(id) = args.id {
        let key = client_keys::find(&store, &id).await?;
        if store.revoke_client_key(&id, now).await? {
            tokio::time::sleep(client_keys::SETTLE).await;
            println!(
                "revoked {id} ({}, {}); a running proxy refuses it from now on",
                client_keys::display_prefix(&key.prefix),
                key.account
            );
        } else {
            println!("{id} was already revoked");
        }
        store.close().await;
        return Ok(());
    }

    let account = args.account.map(|a| a.to_ascii_lowercase());
    let active: Vec<ClientKeyRow> = store
        .client_keys(account.as_deref())
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    let files: Vec<PathBuf> = file_keys(config)?
        .into_iter()
        .filter(|(_, domain, _)| account.as_ref().is_none_or(|a| a == domain))
        .map(|(file, _, _)| file)
        .collect();
    if !args.yes {
        eprintln!(
            "This revokes {} client key(s){} in the database and removes the plaintext \
             client_api_key from {} credential file(s). Clients using them get 401 at once.",
            active.len(),
            account
                .as_deref()
                .map(|a| format!(" of {a}"))
                .unwrap_or_default(),
            files.len()
        );
        eprint!("Type \"yes\" to continue: ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            anyhow::bail!("nothing revoked");
        }
    }
    let revoked = store
        .revoke_all_client_keys(account.as_deref(), now)
        .await?;
    store.close().await;
    if !revoked.is_empty() {
        tokio::time::sleep(client_keys::SETTLE).await;
    }
    println!("revoked {} client key(s) in the database", revoked.len());
    for id in &revoked {
        println!("  {id}");
    }
    for file in files {
        credentials::remove_client_key(&file).context("cannot remove client_api_key")?;
        println!("removed client_api_key from {}", file.display());
    }
    Ok(())
}

fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

fn ago(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - at).whole_seconds().max(0);
    let span = match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    };
    format!("{span} ago")
}
