//! Encryption at rest of stored bodies and stream chunks (`STORAGE_ENABLED=true`).
//!
//! XChaCha20-Poly1305 with a 256-bit data key, from `STORAGE_ENCRYPTION_KEY` (base64; for
//! servers), else the OS keychain (entry `storage-data-key`, created on first use), else, when
//! there is no usable keychain (a headless server), a key file in the data directory (0600).
//! Either way the key stays on the machine when the records go to a shared PostgreSQL. Each value is stored as
//! `enc:v1:` + base64(random 24-byte nonce ‖ ciphertext), authenticated together with its
//! request id, so a value moved to another row does not decrypt. Metadata columns stay plain,
//! so the monitoring queries work.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

use crate::secrets::SecretStore;

const PREFIX: &str = "enc:v1:";
const NONCE: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("expected 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")]
    Malformed,
    #[error("cannot read or create the key file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error(
        "stored body cannot be decrypted: the data key is not the one it was written with (STORAGE_ENCRYPTION_KEY or the key file)"
    )]
    WrongKey,
    #[error("stored body is encrypted and no data key is configured (STORAGE_ENCRYPTION_KEY)")]
    NoKey,
    #[error("stored body is damaged (not valid encrypted text)")]
    Damaged,
}

/// The keychain entry of the data key.
pub const KEYCHAIN_ENTRY: &str = "storage-data-key";

/// Where the data key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `STORAGE_ENCRYPTION_KEY`.
    Env,
    /// The OS keychain entry [`KEYCHAIN_ENTRY`].
    Keychain,
    /// `<data dir>/storage_key`.
    File,
}

/// Finds the data key: `env` (`STORAGE_ENCRYPTION_KEY`), else the keychain entry, else the
/// data directory's key file. With `create`, a missing key is made: kept in the keychain when
/// it works (written, then read back), else in a new key file.
pub fn resolve(
    env: Option<&SecretString>,
    secrets: &dyn SecretStore,
    data_dir: &Path,
    create: bool,
) -> Result<Option<(DataKey, KeySource)>, KeyError> {
    if let Some(key) = env {
        return Ok(Some((
            DataKey::from_base64(key.expose_secret())?,
            KeySource::Env,
        )));
    }
    if let Ok(key) = secrets.get(KEYCHAIN_ENTRY) {
        return Ok(Some((
            DataKey::from_base64(key.expose_secret())?,
            KeySource::Keychain,
        )));
    }
    let file = data_dir.join("storage_key");
    if file.exists() {
        return Ok(Some((DataKey::load_or_create(&file)?, KeySource::File)));
    }
    if !create {
        return Ok(None);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::File {
        path: file.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let text = SecretString::from(STANDARD.encode(bytes));
    let kept = secrets
        .set(KEYCHAIN_ENTRY, &text)
        .and_then(|()| secrets.get(KEYCHAIN_ENTRY))
        .map(|back| back.expose_secret() == text.expose_secret());
    match kept {
        Ok(true) => {
            tracing::info!(
                "stored bodies are encrypted with a new data key kept in the OS keychain"
            );
            Ok(Some((DataKey::from_bytes(&bytes)?, KeySource::Keychain)))
        }
        Ok(false) | Err(_) => {
            if let Err(e) = kept {
                tracing::warn!(
                    "{e}: the data key for stored bodies goes to {} (0600) instead",
                    file.display()
                );
            }
            Ok(Some((DataKey::load_or_create(&file)?, KeySource::File)))
        }
    }
}

/// The data key. Its bytes never leave this type.
pub struct DataKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(****)")
    }
}

impl DataKey {
    /// A key given as base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<DataKey, KeyError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| KeyError::Malformed)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<DataKey, KeyError> {
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| KeyError::Malformed)?;
        Ok(DataKey { cipher })
    }

    /// The key in `path`, created (random, mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<DataKey, KeyError> {
        let file_error = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => return Self::from_bytes(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| file_error(std::io::Error::other(e)))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::atomic_file::create_private_dir(dir).map_err(file_error)?;
        }
        crate::atomic_file::write_private(path, &bytes).map_err(file_error)?;
        Self::from_bytes(&bytes)
    }

    /// Encrypts `plaintext`, bound to `context` (the request id).
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the OS random number generator works");
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }
}

/// Whether a stored value is encrypted.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// The plaintext of a stored value: decrypted when sealed, as it is when it was stored before
/// encryption existed.
pub fn open(key: Option<&DataKey>, context: &str, stored: &str) -> Result<String, DecryptError> {
    let Some(encoded) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_owned());
    };
    let key = key.ok_or(DecryptError::NoKey)?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| DecryptError::Damaged)?;
    if bytes.len() < NONCE {
        return Err(DecryptError::Damaged);
    }
    let (nonce, sealed) = bytes.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| DecryptError::Damaged)?;
    let plain = key
        .cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: sealed,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| DecryptError::WrongKey)?;
    String::from_utf8(plain).map_err(|_| DecryptError::Damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "qdzwZ6Jb6uV0m7n0vVb2Y4cG5j9Q0lq1C0w3xvQm1rQ=";

    #[test]
    fn round_trip_bound_to_its_request() {
        let key = DataKey::from_base64(KEY).unwrap();
        let sealed = key.seal("req_1", "hello body");
        assert!(is_sealed(&sealed) && !sealed.contains("hello"));
        assert_ne!(
            sealed,
            key.seal("req_1", "hello body"),
            "fresh nonce each time"
        );
        assert_eq!(open(Some(&key), "req_1", &sealed).unwrap(), "hello body");
        assert!(matches!(
            open(Some(&key), "req_2", &sealed),
            Err(DecryptError::WrongKey)
        ));
        let other = DataKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(matches!(
            open(Some(&other), "req_1", &sealed),
            Err(DecryptError::WrongKey)
        ));
        assert!(matches!(
            open(None, "req_1", &sealed),
            Err(DecryptError::NoKey)
        ));
        assert_eq!(
            open(None, "req_1", "plain old body").unwrap(),
            "plain old body"
        );
    }

    #[test]
    fn a_new_key_goes_to_the_keychain_and_is_found_there_again() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = crate::secrets::MemorySecrets::default();
        assert!(
            resolve(None, &secrets, dir.path(), false)
                .unwrap()
                .is_none()
        );
        let (key, source) = resolve(None, &secrets, dir.path(), true).unwrap().unwrap();
        assert_eq!(source, KeySource::Keychain);
        assert!(!dir.path().join("storage_key").exists(), "no key on disk");
        let sealed = key.seal("r", "body");
        let (again, source) = resolve(None, &secrets, dir.path(), false).unwrap().unwrap();
        assert_eq!(source, KeySource::Keychain);
        assert_eq!(open(Some(&again), "r", &sealed).unwrap(), "body");
        let env = SecretString::from(KEY.to_owned());
        assert_eq!(
            resolve(Some(&env), &secrets, dir.path(), true)
                .unwrap()
                .unwrap()
                .1,
            KeySource::Env
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(DataKey::from_base64("short").is_err());
        assert!(DataKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(DataKey::from_base64(&URL_SAFE_NO_PAD.encode([1u8; 32])).is_ok());
        assert_eq!(
            format!("{:?}", DataKey::from_base64(KEY).unwrap()),
            "DataKey(****)"
        );
    }
}
