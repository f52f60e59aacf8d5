//! `claude-nexus credentials import|export|check`: moving the credential files' secrets into
//! the OS keychain and back, and reporting where every secret is.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use claude_nexus::Config;
use claude_nexus::accounts::client_keys::{self, FILE_KEY_PREFIX};
use claude_nexus::accounts::credentials::keychain::{self, Location};
use claude_nexus::accounts::credentials::{self, FILE_SUFFIX};
use claude_nexus::secrets::{Keychain, SecretStore};
use claude_nexus::store::{ClientKeyRow, Store};
use serde_json::Value;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Move every inline secret (api_key, oauth tokens) of the credential files into the OS
    /// keychain, leaving {"keychain": "<entry>"} references; a plaintext client_api_key moves
    /// into the database as a key of the account (same key, only its hash kept). Idempotent.
    Import {
        /// A credential file or a directory of them (default: CREDENTIALS_DIR).
        path: Option<PathBuf>,
    },
    /// Print a domain's credential file with its secrets inline (the original's format), to
    /// move it to a machine without a keychain. Asks first, unless --yes.
    Export {
        domain: String,
        /// Do not ask before printing secrets.
        #[arg(long)]
        yes: bool,
    },
    /// Report each credential file's permissions, where its secrets are, and its client keys.
    Check,
}

pub async fn run(config: &Config, command: CredentialsCommand) -> anyhow::Result<()> {
    match command {
        CredentialsCommand::Import { path } => {
            import(config, path.as_deref().unwrap_or(&config.credentials_dir)).await
        }
        CredentialsCommand::Export { domain, yes } => export(config, &domain, yes),
        CredentialsCommand::Check => check(config).await,
    }
}

fn files_at(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        Ok(credentials::list_files(path).with_context(|| path.display().to_string())?)
    } else if path.is_file() {
        Ok(vec![path.to_path_buf()])
    } else {
        anyhow::bail!("{}: no such file or directory", path.display())
    }
}

async fn import(config: &Config, path: &Path) -> anyhow::Result<()> {
    let files = files_at(path)?;
    let mut failed = 0;
    let mut store = None;
    for file in &files {
        match keychain::import_file(file, &Keychain) {
            Ok(moved) if moved.is_empty() => {
                println!("{}: no inline secret", file.display());
            }
            Ok(moved) => println!(
                "{}: moved {} to the keychain",
                file.display(),
                moved.join(", ")
            ),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        }
        if let Err(e) = import_client_key(config, file, &mut store).await {
            eprintln!("error: {}: client_api_key: {e:#}", file.display());
            failed += 1;
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    if failed > 0 {
        anyhow::bail!("{failed} file(s) not fully imported; they keep working as they are");
    }
    Ok(())
}

/// Moves a file's plaintext `client_api_key` into `client_keys` (its hash), then removes it
/// from the file: the same key keeps working, and no copy of it stays on disk.
async fn import_client_key(
    config: &Config,
    file: &Path,
    store: &mut Option<Store>,
) -> anyhow::Result<()> {
    let Some(key) = credentials::read_client_key(file)? else {
        return Ok(());
    };
    if store.is_none() {
        *store = Some(Store::open_configured(config).await?);
    }
    let store = store.as_ref().expect("just opened");
    let salt = client_keys::salt(config).context("cannot read the API key salt")?;
    client_keys::adopt(store, &salt, &credentials::domain_of(file), &key).await?;
    credentials::remove_client_key(file)?;
    println!(
        "{}: moved client_api_key into the database (only its hash; the key keeps working)",
        file.display()
    );
    Ok(())
}

fn export(config: &Config, domain: &str, yes: bool) -> anyhow::Result<()> {
    let domain = domain.to_ascii_lowercase();
    let file = config
        .credentials_dir
        .join(format!("{domain}{FILE_SUFFIX}"));
    if !yes {
        eprintln!(
            "This prints the secrets of {domain} in plain text (from {}).",
            file.display()
        );
        eprint!("Type \"yes\" to continue: ");
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            anyhow::bail!("nothing printed");
        }
    }
    let obj = keychain::export_file(&file, &Keychain)?;
    println!("{}", serde_json::to_string_pretty(&Value::Object(obj))?);
    Ok(())
}

async fn check(config: &Config) -> anyhow::Result<()> {
    let dir = &config.credentials_dir;
    let mut problems = 0;
    match mode_of(dir) {
        Some(mode) if mode & 0o077 != 0 => {
            problems += 1;
            println!(
                "{}: directory mode {mode:o}: PROBLEM, should be 700 (chmod 700 {})",
                dir.display(),
                dir.display()
            );
        }
        Some(mode) => println!("{}: directory mode {mode:o} ok", dir.display()),
        None => anyhow::bail!("{}: cannot read it", dir.display()),
    }
    let keys = match Store::open_configured(config).await {
        Ok(store) => {
            let keys = store.client_keys(None).await;
            store.close().await;
            keys.ok()
        }
        Err(e) => {
            println!("client keys: database unavailable ({e})");
            None
        }
    };
    let now = OffsetDateTime::now_utc();
    for file in credentials::list_files(dir)? {
        let domain = credentials::domain_of(&file);
        match mode_of(&file) {
            Some(mode) if mode & 0o077 != 0 => {
                problems += 1;
                println!(
                    "{}: mode {mode:o}: PROBLEM, the proxy refuses it (chmod 600 {})",
                    file.display(),
                    file.display()
                );
            }
            Some(mode) => println!("{}: mode {mode:o} ok", file.display()),
            None => println!("{}: cannot read its mode", file.display()),
        }
        let obj = match keychain::read_file(&file) {
            Ok(obj) => obj,
            Err(e) => {
                problems += 1;
                println!("  PROBLEM: {e}");
                continue;
            }
        };
        for (field, location) in keychain::locations(&obj) {
            match location {
                Location::Inline => println!(
                    "  {field}: inline in the file (move it: claude-nexus credentials import)"
                ),
                Location::Keychain(entry) => match Keychain.get(&entry) {
                    Ok(_) => println!("  {field}: keychain entry {entry:?} ok"),
                    Err(e) => {
                        problems += 1;
                        println!("  {field}: PROBLEM: {e}");
                    }
                },
            }
        }
        if obj
            .get("client_api_key")
            .and_then(Value::as_str)
            .is_some_and(|k| !k.is_empty())
        {
            let age = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .map(|t| (now - OffsetDateTime::from(t)).whole_days().max(0))
                .map_or_else(|_| "age unknown".into(), |d| format!("file {d} days old"));
            println!(
                "  client_api_key: plaintext in file ({FILE_KEY_PREFIX}{domain}, {age}; move \
                 it: claude-nexus credentials import)"
            );
        }
        if let Some(keys) = &keys {
            println!("  client keys: {}", describe_keys(keys, &domain, now));
        }
    }
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    Ok(())
}

fn describe_keys(keys: &[ClientKeyRow], domain: &str, now: OffsetDateTime) -> String {
    let mine: Vec<&ClientKeyRow> = keys.iter().filter(|k| k.account == domain).collect();
    let active: Vec<&&ClientKeyRow> = mine
        .iter()
        .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > now))
        .collect();
    if active.is_empty() {
        return format!("none active in the database ({} in all)", mine.len());
    }
    let ages: Vec<String> = active
        .iter()
        .map(|k| {
            format!(
                "{} {} days old",
                k.id,
                (now - k.created_at).whole_days().max(0)
            )
        })
        .collect();
    format!("{} active ({})", active.len(), ages.join(", "))
}

fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| 0o600)
    }
}
