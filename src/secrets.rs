//! Where upstream secrets can live outside the credential files: the OS keychain (Secret
//! Service on Linux, Keychain on macOS, Credential Manager on Windows; service name
//! `claude-nexus`), or an in-memory store for tests.
//!
//! A credential file names a keychain entry with `{"keychain": "<entry>"}` in place of a
//! secret; the reference is resolved when the file is loaded, never on a request. A keychain
//! that is locked or absent (a headless server) is one line of error for the files that refer
//! to it; files with inline secrets never touch it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::{ExposeSecret, SecretString};

/// The keychain service every entry is filed under.
pub const SERVICE: &str = "claude-nexus";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("keychain unavailable ({0}); unlock it, or keep the secret inline in the file")]
    Unavailable(String),
    #[error("no keychain entry {0:?}")]
    NotFound(String),
    #[error("keychain entry {entry:?}: {reason}")]
    Failed { entry: String, reason: String },
}

/// A place to keep secrets by entry name.
pub trait SecretStore: Send + Sync {
    fn get(&self, entry: &str) -> Result<SecretString, SecretError>;
    fn set(&self, entry: &str, secret: &SecretString) -> Result<(), SecretError>;
    fn delete(&self, entry: &str) -> Result<(), SecretError>;
}

/// The OS keychain, through the `keyring` crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct Keychain;

impl Keychain {
    fn entry(entry: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(SERVICE, entry).map_err(|e| map_error(entry, &e))
    }
}

impl SecretStore for Keychain {
    fn get(&self, entry: &str) -> Result<SecretString, SecretError> {
        Self::entry(entry)?
            .get_password()
            .map(SecretString::from)
            .map_err(|e| map_error(entry, &e))
    }

    fn set(&self, entry: &str, secret: &SecretString) -> Result<(), SecretError> {
        Self::entry(entry)?
            .set_password(secret.expose_secret())
            .map_err(|e| map_error(entry, &e))
    }

    fn delete(&self, entry: &str) -> Result<(), SecretError> {
        match Self::entry(entry)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_error(entry, &e)),
        }
    }
}

/// keyring's errors, each in one line (D-Bus errors span several).
fn map_error(entry: &str, error: &keyring::Error) -> SecretError {
    let one_line = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match error {
        keyring::Error::NoEntry => SecretError::NotFound(entry.to_string()),
        keyring::Error::PlatformFailure(e) | keyring::Error::NoStorageAccess(e) => {
            SecretError::Unavailable(one_line(e.to_string()))
        }
        other => SecretError::Failed {
            entry: entry.to_string(),
            reason: one_line(other.to_string()),
        },
    }
}

/// Secrets in memory, for tests; counts every call, so a test can prove a path never asks.
#[derive(Default)]
pub struct MemorySecrets {
    entries: Mutex<HashMap<String, SecretString>>,
    calls: AtomicU64,
}

impl MemorySecrets {
    /// Calls to `get`, `set` and `delete` so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, SecretString>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SecretStore for MemorySecrets {
    fn get(&self, entry: &str) -> Result<SecretString, SecretError> {
        self.entries()
            .get(entry)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(entry.to_string()))
    }

    fn set(&self, entry: &str, secret: &SecretString) -> Result<(), SecretError> {
        self.entries().insert(entry.to_string(), secret.clone());
        Ok(())
    }

    fn delete(&self, entry: &str) -> Result<(), SecretError> {
        self.entries().remove(entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trips_and_counts() {
        let store = MemorySecrets::default();
        assert!(matches!(store.get("a"), Err(SecretError::NotFound(_))));
        store.set("a", &SecretString::from("s1")).unwrap();
        assert_eq!(store.get("a").unwrap().expose_secret(), "s1");
        store.delete("a").unwrap();
        assert!(store.get("a").is_err());
        assert_eq!(store.calls(), 5);
    }
}
