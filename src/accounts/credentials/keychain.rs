//! Moving a credential file's secrets into the keychain and back, and reporting where they are.
//!
//! Import never leaves a secret in neither place: each secret is written to its entry and read
//! back before the file is rewritten (atomically, 0600) with `{"keychain": "<entry>"}` in its
//! place. Fields already referring to the keychain are left alone, so import is idempotent.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::atomic_file;
use crate::secrets::{SecretError, SecretStore};

/// The secret fields of a credential file: (parent object, field); `None` is the top level.
pub const SECRET_FIELDS: [(Option<&str>, &str); 3] = [
    (None, "api_key"),
    (Some("oauth"), "accessToken"),
    (Some("oauth"), "refreshToken"),
];

#[derive(Debug, thiserror::Error)]
pub enum KeychainFileError {
    #[error("{}: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a JSON object", .file.display())]
    Invalid { file: PathBuf },
    #[error("{}: {field}: {source}", .file.display())]
    Secret {
        file: PathBuf,
        field: String,
        #[source]
        source: SecretError,
    },
    #[error("{}: {field}: the keychain gave back something else than was written; file left as it was", .file.display())]
    Mismatch { file: PathBuf, field: String },
}

/// Where one secret field of a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Inline,
    Keychain(String),
}

/// The name of a field in messages: `api_key`, `oauth.accessToken`.
pub fn field_path(parent: Option<&str>, name: &str) -> String {
    match parent {
        Some(parent) => format!("{parent}.{name}"),
        None => name.to_string(),
    }
}

/// The keychain entry import gives a field of `domain`'s file.
pub fn entry_name(domain: &str, parent: Option<&str>, name: &str) -> String {
    format!("{domain}/{}", field_path(parent, name))
}

fn read(file: &Path) -> Result<Map<String, Value>, KeychainFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| KeychainFileError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(KeychainFileError::Invalid {
            file: file.to_path_buf(),
        }),
    }
}

fn write(file: &Path, obj: &Map<String, Value>) -> Result<(), KeychainFileError> {
    let mut text = serde_json::to_string_pretty(obj).expect("a JSON map serializes");
    text.push('\n');
    atomic_file::write_private(file, text.as_bytes()).map_err(|source| KeychainFileError::Io {
        file: file.to_path_buf(),
        source,
    })
}

fn parent_of<'a>(
    obj: &'a mut Map<String, Value>,
    parent: Option<&str>,
) -> Option<&'a mut Map<String, Value>> {
    match parent {
        None => Some(obj),
        Some(parent) => obj.get_mut(parent)?.as_object_mut(),
    }
}

/// Each secret field present in `obj`, and where it is.
pub fn locations(obj: &Map<String, Value>) -> Vec<(String, Location)> {
    let mut found = Vec::new();
    for (parent, name) in SECRET_FIELDS {
        let holder = match parent {
            None => Some(obj),
            Some(p) => obj.get(p).and_then(Value::as_object),
        };
        let Some(holder) = holder else { continue };
        match holder.get(name) {
            Some(Value::String(s)) if !s.is_empty() => {
                found.push((field_path(parent, name), Location::Inline));
            }
            Some(Value::Object(_)) => {
                if let Some(entry) = super::keychain_reference(holder, name) {
                    found.push((
                        field_path(parent, name),
                        Location::Keychain(entry.to_string()),
                    ));
                }
            }
            _ => {}
        }
    }
    found
}

/// Moves the inline secrets of `file` into `secrets`; returns the fields moved (none when
/// everything already was in the keychain).
pub fn import_file(
    file: &Path,
    secrets: &dyn SecretStore,
) -> Result<Vec<String>, KeychainFileError> {
    let mut obj = read(file)?;
    let domain = super::domain_of(file);
    let mut moved = Vec::new();
    for (parent, name) in SECRET_FIELDS {
        let Some(holder) = parent_of(&mut obj, parent) else {
            continue;
        };
        let Some(Value::String(value)) = holder.get(name).filter(|v| v.as_str() != Some("")) else {
            continue;
        };
        let secret = SecretString::from(value.clone());
        let field = field_path(parent, name);
        let entry = entry_name(&domain, parent, name);
        let failed = |source| KeychainFileError::Secret {
            file: file.to_path_buf(),
            field: field.clone(),
            source,
        };
        secrets.set(&entry, &secret).map_err(failed)?;
        let back = secrets.get(&entry).map_err(failed)?;
        if back.expose_secret() != secret.expose_secret() {
            return Err(KeychainFileError::Mismatch {
                file: file.to_path_buf(),
                field,
            });
        }
        holder.insert(name.to_string(), json!({ "keychain": entry }));
        moved.push(field);
    }
    if !moved.is_empty() {
        write(file, &obj)?;
    }
    Ok(moved)
}

/// `file` with every keychain reference replaced by its secret: the original's inline format.
pub fn export_file(
    file: &Path,
    secrets: &dyn SecretStore,
) -> Result<Map<String, Value>, KeychainFileError> {
    let mut obj = read(file)?;
    for (parent, name) in SECRET_FIELDS {
        let Some(holder) = parent_of(&mut obj, parent) else {
            continue;
        };
        let Some(entry) = super::keychain_reference(holder, name).map(str::to_string) else {
            continue;
        };
        let secret = secrets
            .get(&entry)
            .map_err(|source| KeychainFileError::Secret {
                file: file.to_path_buf(),
                field: field_path(parent, name),
                source,
            })?;
        holder.insert(name.to_string(), json!(secret.expose_secret()));
    }
    Ok(obj)
}

/// Reads `file` for reporting (`credentials check`).
pub fn read_file(file: &Path) -> Result<Map<String, Value>, KeychainFileError> {
    read(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MemorySecrets;

    #[test]
    fn import_moves_secrets_keeps_the_rest_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.example.credentials.json");
        std::fs::write(
            &file,
            r#"{"type":"oauth","accountId":"acc","client_api_key":"cnp_live_x",
                "oauth":{"accessToken":"at-secret","refreshToken":"rt-secret","expiresAt":5},"slack":{"c":1}}"#,
        )
        .unwrap();
        let secrets = MemorySecrets::default();
        let moved = import_file(&file, &secrets).unwrap();
        assert_eq!(moved, vec!["oauth.accessToken", "oauth.refreshToken"]);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("at-secret") && !text.contains("rt-secret"),
            "{text}"
        );
        let obj = read(&file).unwrap();
        assert_eq!(
            obj["oauth"]["accessToken"]["keychain"],
            "t.example/oauth.accessToken"
        );
        assert_eq!(obj["oauth"]["expiresAt"], 5);
        assert_eq!(obj["slack"]["c"], 1);
        assert_eq!(obj["client_api_key"], "cnp_live_x");
        assert_eq!(
            secrets
                .get("t.example/oauth.refreshToken")
                .unwrap()
                .expose_secret(),
            "rt-secret"
        );
        assert!(import_file(&file, &secrets).unwrap().is_empty());
        assert_eq!(
            locations(&read(&file).unwrap()),
            vec![
                (
                    "oauth.accessToken".into(),
                    Location::Keychain("t.example/oauth.accessToken".into())
                ),
                (
                    "oauth.refreshToken".into(),
                    Location::Keychain("t.example/oauth.refreshToken".into())
                ),
            ]
        );
        let exported = export_file(&file, &secrets).unwrap();
        assert_eq!(exported["oauth"]["accessToken"], "at-secret");
    }

    #[test]
    fn a_failing_keychain_leaves_the_file_as_it_was() {
        struct Locked;
        impl SecretStore for Locked {
            fn get(&self, _: &str) -> Result<SecretString, SecretError> {
                Err(SecretError::Unavailable("locked".into()))
            }
            fn set(&self, _: &str, _: &SecretString) -> Result<(), SecretError> {
                Err(SecretError::Unavailable("locked".into()))
            }
            fn delete(&self, _: &str) -> Result<(), SecretError> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("l.credentials.json");
        let text = r#"{"type":"api_key","api_key":"sk-secret"}"#;
        std::fs::write(&file, text).unwrap();
        let err = import_file(&file, &Locked).unwrap_err().to_string();
        assert!(
            err.contains("keychain unavailable") && !err.contains("sk-secret"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    }
}
