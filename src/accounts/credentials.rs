//! Accounts: the credential files in `CREDENTIALS_DIR`, in the original's format.
//!
//! One file per domain, `<domain>.credentials.json`:
//! `{"type": "api_key" | "oauth" | "passthrough", "accountId", "api_key", "client_api_key",
//!   "oauth": {"accessToken", "refreshToken", "expiresAt", "scopes", "isMax"}, "slack": {…}}`.
//!
//! Files readable by group or others are refused, like ssh does. A malformed file is reported
//! by name and field (never by value) and skipped; the others still load. The directory is
//! watched: an edit takes effect without a restart, and a broken edit keeps the file's last
//! good version. Requests read an immutable [`Accounts`] snapshot, so a reload never disturbs
//! one in flight.
//!
//! Writing back (a rotated OAuth token, a new login, a client key taken out) is in [`update`]:
//! atomic, mode 0600, every other field of the file kept.

pub mod keychain;
mod update;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use secrecy::SecretString;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::accounts::client_keys;
use crate::atomic_file::mode_of;
use crate::keys::{KeyHash, KeySalt};
use crate::secrets::{Keychain, SecretStore};

pub use update::{
    OAuthTokens, UpdateError, read_client_key, read_oauth_tokens, read_oauth_tokens_with,
    remove_client_key, save_login, save_oauth_tokens, save_oauth_tokens_with,
};

pub const FILE_SUFFIX: &str = ".credentials.json";

/// One account: a domain, its upstream credential and its file's own client key.
#[derive(Debug)]
pub struct Account {
    pub domain: String,
    /// The file it was loaded from (empty for an account parsed from text).
    pub file: PathBuf,
    pub account_id: Option<String>,
    pub credential: UpstreamCredential,
    pub client_key: Option<FileKey>,
    /// The file's `slack` block, when enabled: this domain's alerts also go there.
    pub slack: Option<SlackTarget>,
}

/// A credential file's `slack` block (the original's): `{"webhook_url", "channel",
/// "username", "icon_emoji", "enabled"}`. The URL is a secret (anyone holding it can post).
#[derive(Debug, Clone)]
pub struct SlackTarget {
    pub webhook_url: SecretString,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
}

/// The `slack` block, if it is there, enabled, and has a webhook URL.
fn parse_slack(obj: &Map<String, Value>) -> Result<Option<SlackTarget>, String> {
    let slack = match obj.get("slack") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(slack)) => slack,
        Some(_) => return Err("field \"slack\" must be an object".into()),
    };
    if slack.get("enabled") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    let text = |name: &str| slack.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(text("webhook_url").map(|url| SlackTarget {
        webhook_url: SecretString::from(url),
        channel: text("channel"),
        username: text("username"),
        icon_emoji: text("icon_emoji"),
    }))
}

/// A credential file's plaintext `client_api_key` (the original's format), as kept after
/// loading: its salted hash, which requests are checked against, and its first characters,
/// which the dashboard shows. The key itself is dropped with the file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileKey {
    pub hash: KeyHash,
    /// [`client_keys::prefix_of`] the key, e.g. `cnp_live_Ab12`.
    pub prefix: String,
}

impl FileKey {
    fn new(key: &str, salt: &KeySalt) -> FileKey {
        FileKey {
            hash: salt.hash(key),
            prefix: client_keys::prefix_of(key),
        }
    }
}

#[derive(Debug)]
pub enum UpstreamCredential {
    /// Sent upstream as `x-api-key`.
    ApiKey(SecretString),
    /// Sent upstream as `Authorization: Bearer`, with `anthropic-beta: oauth-2025-04-20`.
    OAuth(OAuthCredential),
    /// None of ours: the client's own `Authorization`/`x-api-key` goes upstream untouched, and
    /// the client key comes in `x-nexus-key`.
    Passthrough,
}

#[derive(Debug)]
pub struct OAuthCredential {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// Unix milliseconds, as in the original's files.
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    pub is_max: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Someone else could put an account (a client key and an upstream of theirs) in it.
    #[error(
        "{}: writable by group or others (mode {mode:o}); refusing to load any account from it. Fix: chmod 700 {}",
        .dir.display(), .dir.display()
    )]
    DirectoryWritable { dir: PathBuf, mode: u32 },
    #[error(
        "{}: readable by group or others (mode {mode:o}); refusing to load it. Fix: chmod 600 {}",
        .file.display(), .file.display()
    )]
    Permissions { file: PathBuf, mode: u32 },
    #[error("{}: {reason}", .file.display())]
    Invalid { file: PathBuf, reason: String },
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An immutable view of the loaded accounts, looked up on every request.
#[derive(Debug, Default)]
pub struct Accounts {
    by_domain: HashMap<String, Arc<Account>>,
    by_key: HashMap<KeyHash, Arc<Account>>,
}

impl Accounts {
    fn new(accounts: impl IntoIterator<Item = Arc<Account>>) -> Accounts {
        let mut by_domain = HashMap::new();
        let mut by_key: HashMap<KeyHash, Arc<Account>> = HashMap::new();
        let mut shared_keys = Vec::new();
        for account in accounts {
            if let Some(hash) = account.client_key.as_ref().map(|k| k.hash)
                && let Some(other) = by_key.insert(hash, account.clone())
            {
                shared_keys.push((hash, other.domain.clone(), account.domain.clone()));
            }
            by_domain.insert(account.domain.clone(), account);
        }
        // A key shared by two accounts cannot select one by itself: it then only works
        // with the Host of its own domain.
        for (hash, a, b) in shared_keys {
            by_key.remove(&hash);
            tracing::warn!(
                "accounts {a} and {b} share a client key; it now works only with Host: <domain>"
            );
        }
        Accounts { by_domain, by_key }
    }

    pub fn by_domain(&self, domain: &str) -> Option<&Arc<Account>> {
        self.by_domain.get(domain)
    }

    pub fn by_key(&self, hash: &KeyHash) -> Option<&Arc<Account>> {
        self.by_key.get(hash)
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Account>> {
        self.by_domain.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The single account, when there is exactly one.
    pub fn only(&self) -> Option<&Arc<Account>> {
        match self.by_domain.len() {
            1 => self.by_domain.values().next(),
            _ => None,
        }
    }
}

/// The credentials directory, loaded and kept current.
pub struct Credentials {
    dir: PathBuf,
    salt: Arc<KeySalt>,
    /// Where `{"keychain": …}` references are resolved (at load time only).
    secrets: Arc<dyn SecretStore>,
    current: ArcSwap<Accounts>,
    /// The last version of each file that loaded, kept when an edit breaks it.
    last_good: Mutex<HashMap<PathBuf, Arc<Account>>>,
    reloads: watch::Sender<u64>,
}

impl Credentials {
    /// Loads the directory; returns the files that could not be loaded alongside.
    pub fn load(dir: &Path, salt: Arc<KeySalt>) -> (Credentials, Vec<CredentialError>) {
        Self::load_with(dir, salt, Arc::new(Keychain))
    }

    /// Like [`Credentials::load`], resolving keychain references in `secrets`.
    pub fn load_with(
        dir: &Path,
        salt: Arc<KeySalt>,
        secrets: Arc<dyn SecretStore>,
    ) -> (Credentials, Vec<CredentialError>) {
        let credentials = Credentials {
            dir: dir.to_path_buf(),
            salt,
            secrets,
            current: ArcSwap::default(),
            last_good: Mutex::default(),
            reloads: watch::Sender::new(0),
        };
        check_dir_permissions(dir);
        let errors = credentials.reload();
        (credentials, errors)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the files' keychain references point.
    pub fn secrets(&self) -> &Arc<dyn SecretStore> {
        &self.secrets
    }

    /// The current accounts. Cheap: no lock, no I/O.
    pub fn snapshot(&self) -> Arc<Accounts> {
        self.current.load_full()
    }

    /// A channel that ticks after every reload (the value counts reloads).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Re-reads every file. A file that fails keeps its last good version, if it had one. A
    /// directory others can write to loads nothing at all.
    pub fn reload(&self) -> Vec<CredentialError> {
        if let Some(mode) = writable_by_others(&self.dir) {
            self.last_good
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            self.current.store(Arc::new(Accounts::default()));
            self.reloads.send_modify(|n| *n += 1);
            return vec![CredentialError::DirectoryWritable {
                dir: self.dir.clone(),
                mode,
            }];
        }
        let mut errors = Vec::new();
        let mut files = match list_files(&self.dir) {
            Ok(files) => files,
            Err(source) => {
                errors.push(CredentialError::Io {
                    file: self.dir.clone(),
                    source,
                });
                Vec::new()
            }
        };
        let mut last_good = self.last_good.lock().unwrap_or_else(|e| e.into_inner());
        // A listing taken while a file is renamed over (an editor's save, our own token
        // rotation) may miss it on some filesystems: a file we had counts as removed only
        // when it is really gone.
        for known in last_good.keys() {
            if !files.contains(known) && known.is_file() {
                files.push(known.clone());
            }
        }
        let mut loaded = HashMap::new();
        for file in files {
            match load_file_with(&file, &self.salt, self.secrets.as_ref()) {
                Ok(account) => {
                    loaded.insert(file, Arc::new(account));
                }
                Err(error) => {
                    if let Some(previous) = last_good.get(&file) {
                        tracing::warn!("{error}; keeping its last good version");
                        loaded.insert(file, previous.clone());
                    }
                    errors.push(error);
                }
            }
        }
        self.current
            .store(Arc::new(Accounts::new(loaded.values().cloned())));
        *last_good = loaded;
        drop(last_good);
        self.reloads.send_modify(|n| *n += 1);
        errors
    }
}

/// Watches the directory and reloads on every change until `shutdown`.
/// Returns `None` (after logging why) when the directory cannot be watched.
pub fn spawn_watcher(
    credentials: Arc<Credentials>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let (watcher, mut rx) = match crate::dir_watch::watch(credentials.dir()) {
        Ok(watching) => watching,
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); edits need a restart",
                credentials.dir().display()
            );
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    let reloader = credentials.clone();
                    let errors = tokio::task::spawn_blocking(move || reloader.reload())
                        .await
                        .unwrap_or_default();
                    for error in &errors {
                        tracing::warn!("{error}");
                    }
                    tracing::info!(
                        accounts = credentials.snapshot().len(),
                        "credentials reloaded"
                    );
                }
            }
        }
    }))
}

/// The credential files (`*.credentials.json`) in `dir`, sorted.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_credentials = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(FILE_SUFFIX) && n.len() > FILE_SUFFIX.len());
        if is_credentials && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The domain a credential file is for (its name less [`FILE_SUFFIX`], lower case).
pub fn domain_of(file: &Path) -> String {
    file.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(FILE_SUFFIX))
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Warns when the directory is readable by others (they can list the accounts); writable
/// is worse, and refused by [`Credentials::reload`].
fn check_dir_permissions(dir: &Path) {
    if let Some(mode) = mode_of(dir)
        && mode & 0o077 != 0
        && writable_by_others(dir).is_none()
    {
        tracing::warn!(
            "credentials directory {} is readable by group or others (mode {mode:o}); fix: chmod 700 {}",
            dir.display(),
            dir.display()
        );
    }
}

/// The directory's mode when group or others may write in it.
pub fn writable_by_others(dir: &Path) -> Option<u32> {
    mode_of(dir).filter(|&mode| lets_others_write(mode))
}

/// Whether a directory of `mode` lets group or others add files: then it loads no account.
pub fn lets_others_write(mode: u32) -> bool {
    mode & 0o022 != 0
}

/// Loads one credential file: permissions first, then the JSON (keychain references resolved
/// in the OS keychain).
pub fn load_file(file: &Path, salt: &KeySalt) -> Result<Account, CredentialError> {
    load_file_with(file, salt, &Keychain)
}

/// Loads one credential file, resolving keychain references in `secrets`.
pub fn load_file_with(
    file: &Path,
    salt: &KeySalt,
    secrets: &dyn SecretStore,
) -> Result<Account, CredentialError> {
    let io = |source| CredentialError::Io {
        file: file.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialError::Permissions {
                file: file.to_path_buf(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(file).map_err(io)?;
    let domain = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(FILE_SUFFIX))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut account =
        parse_with(&domain, &text, salt, secrets).map_err(|reason| CredentialError::Invalid {
            file: file.to_path_buf(),
            reason,
        })?;
    account.file = file.to_path_buf();
    Ok(account)
}

/// Parses a credential file's text. Error messages name the field, never its value.
pub fn parse(domain: &str, text: &str, salt: &KeySalt) -> Result<Account, String> {
    parse_with(domain, text, salt, &Keychain)
}

/// Parses a credential file's text, resolving keychain references in `secrets`.
pub fn parse_with(
    domain: &str,
    text: &str,
    salt: &KeySalt,
    secrets: &dyn SecretStore,
) -> Result<Account, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("not valid JSON (line {}, column {})", e.line(), e.column()))?;
    let obj = value.as_object().ok_or("expected a JSON object")?;
    let kind = string_field(obj, "type")?.ok_or("missing field \"type\"")?;
    let credential = match kind {
        "api_key" => {
            let key = secret_field(obj, "api_key", "api_key", secrets)?
                .ok_or("field \"api_key\" is required when \"type\" is \"api_key\"")?;
            UpstreamCredential::ApiKey(key)
        }
        "oauth" => {
            let oauth = match obj.get("oauth") {
                Some(Value::Object(oauth)) => oauth,
                Some(_) => return Err("field \"oauth\" must be an object".into()),
                None => return Err("field \"oauth\" is required when \"type\" is \"oauth\"".into()),
            };
            UpstreamCredential::OAuth(parse_oauth(oauth, secrets)?)
        }
        "passthrough" => UpstreamCredential::Passthrough,
        _ => {
            return Err("field \"type\" must be \"api_key\", \"oauth\" or \"passthrough\"".into());
        }
    };
    let slack = parse_slack(obj)?;
    Ok(Account {
        domain: domain.to_string(),
        file: PathBuf::new(),
        account_id: string_field(obj, "accountId")?.map(str::to_string),
        credential,
        client_key: string_field(obj, "client_api_key")?.map(|key| FileKey::new(key, salt)),
        slack,
    })
}

fn parse_oauth(
    oauth: &Map<String, Value>,
    secrets: &dyn SecretStore,
) -> Result<OAuthCredential, String> {
    let access = secret_field(oauth, "accessToken", "oauth.accessToken", secrets)?
        .ok_or("field \"oauth.accessToken\" is required")?;
    let expires_at = match oauth.get("expiresAt") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or("field \"oauth.expiresAt\" must be a number (Unix milliseconds)")?,
        ),
    };
    let scopes = match oauth.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("field \"oauth.scopes\" must be a list of strings")?,
        Some(_) => return Err("field \"oauth.scopes\" must be a list of strings".into()),
    };
    let is_max = match oauth.get("isMax") {
        None | Some(Value::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or("field \"oauth.isMax\" must be true or false")?,
    };
    Ok(OAuthCredential {
        access_token: access,
        refresh_token: secret_field(oauth, "refreshToken", "oauth.refreshToken", secrets)?,
        expires_at,
        scopes,
        is_max,
    })
}

/// A secret field: an inline string, or `{"keychain": "<entry>"}` resolved in `secrets`.
/// `path` names the field in errors (which never quote a value).
fn secret_field(
    obj: &Map<String, Value>,
    name: &str,
    path: &str,
    secrets: &dyn SecretStore,
) -> Result<Option<SecretString>, String> {
    match obj.get(name) {
        Some(Value::Object(reference)) => {
            let entry = reference
                .get("keychain")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .ok_or_else(|| {
                    format!("field \"{path}\" must be a string or {{\"keychain\": \"<entry>\"}}")
                })?;
            secrets
                .get(entry)
                .map(Some)
                .map_err(|e| format!("field \"{path}\": {e}"))
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Ok(string_field(obj, name)?.map(SecretString::from))
        }
        Some(_) => Err(format!(
            "field \"{path}\" must be a string or {{\"keychain\": \"<entry>\"}}"
        )),
    }
}

/// The keychain entry a secret field refers to, if it is a reference.
pub fn keychain_reference<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)?.as_object()?.get("keychain")?.as_str()
}

/// An optional string field: absent, null or empty is `None`; any other type is an error.
fn string_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field \"{name}\" must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn salt() -> KeySalt {
        KeySalt::from_secret_string(&SecretString::from("test-salt"))
    }

    #[test]
    fn parses_the_originals_api_key_file() {
        let text = r#"{"type":"api_key","accountId":"acc_1","api_key":"sk-ant-api03-x","client_api_key":"cnp_live_abc"}"#;
        let account = parse("example.com", text, &salt()).unwrap();
        assert_eq!(account.account_id.as_deref(), Some("acc_1"));
        assert!(
            matches!(&account.credential, UpstreamCredential::ApiKey(k) if k.expose_secret() == "sk-ant-api03-x")
        );
        let key = account.client_key.unwrap();
        assert_eq!(key.hash, salt().hash("cnp_live_abc"));
        assert_eq!(key.prefix, "cnp_li", "half of a short key at most");
    }

    #[test]
    fn parses_the_originals_oauth_file_with_slack_block() {
        let text = r##"{"type":"oauth","accountId":"acc_2","client_api_key":"cnp_live_k",
            "oauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-r","expiresAt":1234567890000,
            "scopes":["user:inference"],"isMax":true},
            "slack":{"webhook_url":"https://hooks.slack.com/x","channel":"#c","enabled":true}}"##;
        let account = parse("team.example", text, &salt()).unwrap();
        let UpstreamCredential::OAuth(oauth) = &account.credential else {
            panic!("expected oauth")
        };
        assert_eq!(oauth.access_token.expose_secret(), "sk-ant-oat01-a");
        assert_eq!(oauth.expires_at, Some(1_234_567_890_000));
        assert_eq!(oauth.scopes, vec!["user:inference"]);
        assert!(oauth.is_max);
        let slack = account.slack.unwrap();
        assert_eq!(
            slack.webhook_url.expose_secret(),
            "https://hooks.slack.com/x"
        );
        assert_eq!(slack.channel.as_deref(), Some("#c"));
        let disabled = text.replace("\"enabled\":true", "\"enabled\":false");
        assert!(
            parse("team.example", &disabled, &salt())
                .unwrap()
                .slack
                .is_none()
        );
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let cases = [
            (r#"{"api_key":"sk-ant-secret1"}"#, "\"type\""),
            (r#"{"type":"api_key"}"#, "\"api_key\""),
            (r#"{"type":"bogus","api_key":"sk-ant-secret1"}"#, "\"type\""),
            (r#"{"type":"api_key","api_key":12}"#, "\"api_key\""),
            (
                r#"{"type":"oauth","oauth":{"refreshToken":"sk-ant-secret1"}}"#,
                "oauth.accessToken",
            ),
            (
                r#"{"type":"oauth","oauth":{"accessToken":"sk-ant-secret1","expiresAt":"soon"}}"#,
                "oauth.expiresAt",
            ),
            (
                r#"{"type":"api_key","api_key":"sk-ant-secret1""#,
                "not valid JSON",
            ),
        ];
        for (text, want) in cases {
            let err = parse("d", text, &salt()).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
            assert!(!err.contains("secret1"), "{err}");
        }
    }

    use proptest::prelude::*;
    use serde_json::json;

    use crate::secrets::MemorySecrets;

    fn cases(n: u32) -> ProptestConfig {
        ProptestConfig {
            cases: n,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Text as a person or a login may leave it in a file, non-ASCII included.
    fn text() -> impl Strategy<Value = String> {
        r#"[a-zA-Z0-9 _:.\\"/é中😀-]{1,24}"#
    }

    /// A credential file as the original and this proxy write them, of each type.
    fn credential_file() -> impl Strategy<Value = serde_json::Value> {
        let oauth = (
            text(),
            prop::option::of(text()),
            prop::option::of(any::<i64>()),
            prop::collection::vec(text(), 0..3),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(access, refresh, expires, scopes, is_max)| {
                let mut o = json!({"accessToken": access, "scopes": scopes});
                if let Some(r) = refresh {
                    o["refreshToken"] = r.into();
                }
                if let Some(e) = expires {
                    o["expiresAt"] = e.into();
                }
                if let Some(m) = is_max {
                    o["isMax"] = m.into();
                }
                o
            });
        (
            prop_oneof![
                text().prop_map(|key| json!({"type": "api_key", "api_key": key})),
                oauth.prop_map(|o| json!({"type": "oauth", "oauth": o})),
                Just(json!({"type": "passthrough"})),
            ],
            prop::option::of(text()),
            prop::option::of(text()),
            any::<bool>(),
        )
            .prop_map(|(mut file, account_id, client_key, slack)| {
                if let Some(id) = account_id {
                    file["accountId"] = id.into();
                }
                if let Some(key) = client_key {
                    file["client_api_key"] = key.into();
                }
                if slack {
                    file["slack"] =
                        json!({"webhook_url": "https://hooks.slack.com/x", "enabled": true});
                }
                file
            })
    }

    /// Any JSON value, small.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            any::<u64>().prop_map(Into::into),
            any::<f64>().prop_map(
                |f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
            ),
            prop::sample::select(vec!["", "api_key", "oauth", "passthrough", "e1"])
                .prop_map(Into::into),
            ".{0,12}".prop_map(Into::into),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Into::into),
                prop::collection::hash_map(
                    prop::sample::select(vec!["keychain", "type", "x"]).prop_map(String::from),
                    inner,
                    0..3
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An object with the file's own field names (and the oauth block's), each holding any value.
    fn fuzzed_file() -> impl Strategy<Value = serde_json::Value> {
        let field = |names: Vec<&'static str>| {
            prop::collection::vec((prop::sample::select(names), any_json()), 0..7).prop_map(
                |fields| {
                    serde_json::Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                },
            )
        };
        (
            field(vec![
                "type",
                "accountId",
                "api_key",
                "client_api_key",
                "slack",
                "oauth",
            ]),
            prop::option::of(field(vec![
                "accessToken",
                "refreshToken",
                "expiresAt",
                "scopes",
                "isMax",
            ])),
            prop::sample::select(vec!["api_key", "oauth", "passthrough"]),
        )
            .prop_map(|(mut file, oauth, kind)| {
                if let Some(o) = oauth {
                    file["oauth"] = o;
                }
                if !file.get("type").is_some_and(|t| t.is_string()) {
                    file["type"] = kind.into();
                }
                file
            })
    }

    fn memory_secrets() -> MemorySecrets {
        let secrets = MemorySecrets::default();
        secrets
            .set("e1", &SecretString::from("sk-ant-from-keychain"))
            .unwrap();
        secrets
    }

    proptest! {
        #![proptest_config(cases(64))]

        /// A file cut short at any byte (an editor's half-written save) is refused with an
        /// error, never loaded as an account with fields missing, and never panics.
        #[test]
        fn a_credential_file_cut_short_is_an_error(
            file in credential_file(),
            pretty in any::<bool>(),
        ) {
            let text = if pretty {
                serde_json::to_string_pretty(&file).unwrap()
            } else {
                file.to_string()
            };
            let account = parse("example.com", &text, &salt());
            prop_assert!(account.is_ok(), "{:?}", account.err());
            for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
                let err = parse("example.com", &text[..cut], &salt());
                prop_assert!(err.is_err(), "cut at {}", cut);
            }
        }
    }

    proptest! {
        #![proptest_config(cases(256))]

        /// Any text, and any value in any field: an account or an error, never a panic.
        #[test]
        fn any_credential_text_is_an_account_or_an_error(
            text in prop_oneof![
                ".{0,64}",
                fuzzed_file().prop_map(|v| v.to_string()),
            ],
        ) {
            let secrets = memory_secrets();
            let _ = parse_with("example.com", &text, &salt(), &secrets);
        }
    }
}
