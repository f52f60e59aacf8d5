//! Writing credential files: OAuth tokens back (a refresh rotates them; a login writes a new
//! account or renews one), and a plaintext `client_api_key` out (revoked, or moved into the
//! database). Every write is atomic with mode 0600 (see [`crate::atomic_file`]) and keeps
//! every field it does not change (`accountId`, `client_api_key`, `slack`, fields we do not
//! know) as it was.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::atomic_file;
use crate::keys::{self, KeyKind};
use crate::secrets::{Keychain, SecretStore};

/// The tokens of an OAuth account, as the token endpoint granted them.
#[derive(Debug)]
pub struct OAuthTokens {
    pub access_token: SecretString,
    /// `None` keeps the refresh token the file has.
    pub refresh_token: Option<SecretString>,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// Empty keeps the scopes the file has.
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}; not rewriting it", .file.display())]
    Invalid { file: PathBuf, reason: &'static str },
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
}

/// Replaces the tokens of an existing OAuth credential file, keeping every other field.
/// A token the file keeps in the keychain is written there (see [`save_oauth_tokens_with`]).
pub fn save_oauth_tokens(file: &Path, tokens: &OAuthTokens) -> Result<(), UpdateError> {
    save_oauth_tokens_with(file, tokens, &Keychain)
}

/// Replaces the tokens of an existing OAuth credential file, keeping every other field. A
/// token whose field is a `{"keychain": …}` reference goes to that entry in `secrets` (before
/// the file is rewritten with the new expiry), the reference staying; should the keychain
/// refuse it, the token is written inline instead, so a rotated token is never lost.
pub fn save_oauth_tokens_with(
    file: &Path,
    tokens: &OAuthTokens,
    secrets: &dyn SecretStore,
) -> Result<(), UpdateError> {
    let mut obj = read_object(file)?.ok_or_else(|| UpdateError::Io {
        file: file.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    set_tokens(&mut obj, file, tokens, secrets)?;
    write(file, &obj)
}

/// Writes the result of a login: creates the file, or renews the tokens of an existing one
/// (which becomes `"type": "oauth"`). A new file gets a client key, returned so it can be
/// shown once; an existing file is not given one (its keys may be in the database, and a
/// plaintext key must not come back after `credentials import`). `account_id` is used only
/// when the file has no `accountId`.
pub fn save_login(
    file: &Path,
    tokens: &OAuthTokens,
    account_id: &str,
) -> Result<Option<SecretString>, UpdateError> {
    let existing = read_object(file)?;
    let is_new = existing.is_none();
    let mut obj = existing.unwrap_or_default();
    obj.insert("type".into(), json!("oauth"));
    if !has_text(&obj, "accountId") {
        obj.insert("accountId".into(), json!(account_id));
    }
    let created = if !is_new || has_text(&obj, "client_api_key") {
        None
    } else {
        let key = keys::generate(KeyKind::Live)?;
        obj.insert("client_api_key".into(), json!(key.expose_secret()));
        Some(key)
    };
    set_tokens(&mut obj, file, tokens, &Keychain)?;
    write(file, &obj)?;
    Ok(created)
}

/// The OAuth tokens a credential file holds now (as another instance may have saved them),
/// or `None` when it has no complete set.
pub fn read_oauth_tokens(file: &Path) -> Result<Option<OAuthTokens>, UpdateError> {
    read_oauth_tokens_with(file, &Keychain)
}

/// Like [`read_oauth_tokens`], reading tokens the file keeps in the keychain from `secrets`
/// (a token whose entry cannot be read counts as absent).
pub fn read_oauth_tokens_with(
    file: &Path,
    secrets: &dyn SecretStore,
) -> Result<Option<OAuthTokens>, UpdateError> {
    let Some(obj) = read_object(file)? else {
        return Ok(None);
    };
    let oauth = obj.get("oauth");
    let text = |name: &str| {
        let holder = oauth.and_then(Value::as_object)?;
        if let Some(entry) = super::keychain_reference(holder, name) {
            return secrets.get(entry).ok();
        }
        holder
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
    };
    let (Some(access_token), Some(expires_at)) = (
        text("accessToken"),
        oauth
            .and_then(|o| o.get("expiresAt"))
            .and_then(Value::as_i64),
    ) else {
        return Ok(None);
    };
    Ok(Some(OAuthTokens {
        access_token,
        refresh_token: text("refreshToken"),
        expires_at,
        scopes: Vec::new(),
    }))
}

/// The plaintext `client_api_key` of a credential file (the original's format), if it has one.
pub fn read_client_key(file: &Path) -> Result<Option<SecretString>, UpdateError> {
    Ok(read_object(file)?.and_then(|obj| {
        obj.get(CLIENT_KEY)
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(|k| SecretString::from(k.to_owned()))
    }))
}

/// Rewrites `file` without its `client_api_key`, every other field kept; `false` (and no
/// write) when it had none.
pub fn remove_client_key(file: &Path) -> Result<bool, UpdateError> {
    let mut obj = read_object(file)?.ok_or_else(|| UpdateError::Io {
        file: file.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    if obj.remove(CLIENT_KEY).is_none() {
        return Ok(false);
    }
    write(file, &obj)?;
    Ok(true)
}

const CLIENT_KEY: &str = "client_api_key";

fn has_text(obj: &Map<String, Value>, name: &str) -> bool {
    obj.get(name)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

fn read_object(file: &Path) -> Result<Option<Map<String, Value>>, UpdateError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(UpdateError::Io {
                file: file.to_path_buf(),
                source,
            });
        }
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(obj)) => Ok(Some(obj)),
        _ => Err(UpdateError::Invalid {
            file: file.to_path_buf(),
            reason: "not a JSON object",
        }),
    }
}

fn set_tokens(
    obj: &mut Map<String, Value>,
    file: &Path,
    tokens: &OAuthTokens,
    secrets: &dyn SecretStore,
) -> Result<(), UpdateError> {
    let oauth = obj
        .entry("oauth")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(oauth) = oauth else {
        return Err(UpdateError::Invalid {
            file: file.to_path_buf(),
            reason: "field \"oauth\" is not an object",
        });
    };
    set_secret(oauth, "accessToken", &tokens.access_token, secrets);
    if let Some(refresh) = &tokens.refresh_token {
        set_secret(oauth, "refreshToken", refresh, secrets);
    }
    oauth.insert("expiresAt".into(), json!(tokens.expires_at));
    if !tokens.scopes.is_empty() {
        oauth.insert("scopes".into(), json!(tokens.scopes));
    }
    Ok(())
}

/// Writes a secret where its field says: the keychain entry it refers to, else inline.
fn set_secret(
    obj: &mut Map<String, Value>,
    name: &str,
    secret: &SecretString,
    secrets: &dyn SecretStore,
) {
    if let Some(entry) = super::keychain_reference(obj, name) {
        match secrets.set(entry, secret) {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                "cannot write oauth.{name} to the keychain ({e}); writing it inline in the file"
            ),
        }
    }
    obj.insert(name.into(), json!(secret.expose_secret()));
}

fn write(file: &Path, obj: &Map<String, Value>) -> Result<(), UpdateError> {
    let mut text = serde_json::to_string_pretty(obj).expect("a JSON map serializes");
    text.push('\n');
    atomic_file::write_private(file, text.as_bytes()).map_err(|source| UpdateError::Io {
        file: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(refresh: Option<&str>) -> OAuthTokens {
        OAuthTokens {
            access_token: SecretString::from("sk-ant-oat01-new"),
            refresh_token: refresh.map(SecretString::from),
            expires_at: 42,
            scopes: vec![],
        }
    }

    #[test]
    fn rotation_keeps_every_other_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.credentials.json");
        std::fs::write(
            &file,
            r##"{"type":"oauth","accountId":"acc_t","client_api_key":"cnp_live_x","extra":{"a":1},
               "oauth":{"accessToken":"old","refreshToken":"r-old","expiresAt":1,"scopes":["user:inference"],"isMax":true},
               "slack":{"channel":"#c"}}"##,
        )
        .unwrap();
        save_oauth_tokens(&file, &tokens(None)).unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(v["accountId"], "acc_t");
        assert_eq!(v["client_api_key"], "cnp_live_x");
        assert_eq!(v["extra"]["a"], 1);
        assert_eq!(v["slack"]["channel"], "#c");
        assert_eq!(v["oauth"]["accessToken"], "sk-ant-oat01-new");
        assert_eq!(
            v["oauth"]["refreshToken"], "r-old",
            "kept when none returned"
        );
        assert_eq!(v["oauth"]["expiresAt"], 42);
        assert_eq!(v["oauth"]["scopes"][0], "user:inference");
        assert_eq!(v["oauth"]["isMax"], true);
    }

    #[test]
    fn a_client_key_is_read_and_removed_keeping_every_other_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.credentials.json");
        std::fs::write(
            &file,
            r#"{"type":"api_key","api_key":{"keychain":"e"},"client_api_key":"cnp_live_k","x":[1]}"#,
        )
        .unwrap();
        let key = read_client_key(&file).unwrap().unwrap();
        assert_eq!(key.expose_secret(), "cnp_live_k");
        assert!(remove_client_key(&file).unwrap());
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "api_key", "api_key": {"keychain": "e"}, "x": [1]})
        );
        assert!(read_client_key(&file).unwrap().is_none());
        let written = std::fs::metadata(&file).unwrap().modified().unwrap();
        assert!(!remove_client_key(&file).unwrap(), "nothing to remove");
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            written
        );
        assert!(remove_client_key(&dir.path().join("none.credentials.json")).is_err());
    }

    #[test]
    fn login_creates_a_file_with_a_new_client_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.credentials.json");
        let key = save_login(&file, &tokens(Some("r1")), "acc_n")
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(v["type"], "oauth");
        assert_eq!(v["accountId"], "acc_n");
        assert_eq!(v["client_api_key"], key.expose_secret());
        assert_eq!(v["oauth"]["refreshToken"], "r1");
        assert!(
            save_login(&file, &tokens(Some("r2")), "other")
                .unwrap()
                .is_none()
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(v["accountId"], "acc_n");
        assert_eq!(v["oauth"]["refreshToken"], "r2");
    }
}
