//! Writing OAuth tokens back into credential files.
//!
//! A refresh rotates the tokens; a login writes a new account or renews one. Either way the
//! file is rewritten atomically with mode 0600 (see [`crate::atomic_file`]) and every field we
//! do not own (`accountId`, `client_api_key`, `slack`, fields we do not know) is kept as it was.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::atomic_file;
use crate::keys::{self, KeyKind};

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
pub fn save_oauth_tokens(file: &Path, tokens: &OAuthTokens) -> Result<(), UpdateError> {
    let mut obj = read_object(file)?.ok_or_else(|| UpdateError::Io {
        file: file.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    set_tokens(&mut obj, file, tokens)?;
    write(file, &obj)
}

/// Writes the result of a login: creates the file, or renews the tokens of an existing one
/// (which becomes `"type": "oauth"`). A file without a client key gets a new one, returned so
/// it can be shown once. `account_id` is used only when the file has no `accountId`.
pub fn save_login(
    file: &Path,
    tokens: &OAuthTokens,
    account_id: &str,
) -> Result<Option<SecretString>, UpdateError> {
    let mut obj = read_object(file)?.unwrap_or_default();
    obj.insert("type".into(), json!("oauth"));
    if !has_text(&obj, "accountId") {
        obj.insert("accountId".into(), json!(account_id));
    }
    let created = if has_text(&obj, "client_api_key") {
        None
    } else {
        let key = keys::generate(KeyKind::Live)?;
        obj.insert("client_api_key".into(), json!(key.expose_secret()));
        Some(key)
    };
    set_tokens(&mut obj, file, tokens)?;
    write(file, &obj)?;
    Ok(created)
}

/// The OAuth tokens a credential file holds now (as another instance may have saved them),
/// or `None` when it has no complete set.
pub fn read_oauth_tokens(file: &Path) -> Result<Option<OAuthTokens>, UpdateError> {
    let Some(obj) = read_object(file)? else {
        return Ok(None);
    };
    let oauth = obj.get("oauth");
    let text = |name: &str| {
        oauth
            .and_then(|o| o.get(name))
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
    oauth.insert(
        "accessToken".into(),
        json!(tokens.access_token.expose_secret()),
    );
    if let Some(refresh) = &tokens.refresh_token {
        oauth.insert("refreshToken".into(), json!(refresh.expose_secret()));
    }
    oauth.insert("expiresAt".into(), json!(tokens.expires_at));
    if !tokens.scopes.is_empty() {
        oauth.insert("scopes".into(), json!(tokens.scopes));
    }
    Ok(())
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
