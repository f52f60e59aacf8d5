//! Client keys: how they are made, and the salted hash that is all we keep of one.
//!
//! A client key is `cnp_live_` (or `cnp_test_`) followed by the unpadded base64url form of
//! 32 bytes from the OS CSPRNG: 52 characters, 256 bits. The proxy never compares or stores
//! a key in plain text: it keeps `HMAC-SHA256(API_KEY_SALT, key)` and compares those.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const LIVE_PREFIX: &str = "cnp_live_";
pub const TEST_PREFIX: &str = "cnp_test_";
const KEY_BYTES: usize = 32;

/// Which kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Live,
    Test,
}

/// A new client key, fresh from the OS CSPRNG. Shown once to the user, then only hashed.
pub fn generate(kind: KeyKind) -> Result<SecretString, getrandom::Error> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    let prefix = match kind {
        KeyKind::Live => LIVE_PREFIX,
        KeyKind::Test => TEST_PREFIX,
    };
    Ok(SecretString::from(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// The salted hash of a client key. Safe to log and to store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Reads back the hex form that `Display` writes.
    pub fn from_hex(hex: &str) -> Option<KeyHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        Some(KeyHash(bytes))
    }

    /// Constant-time comparison, for checking a presented key against one expected key.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// As hex, the form the database and the spool keep.
impl serde::Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeyHash, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        KeyHash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a key hash"))
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &hex::encode(&self.0[..4]))
    }
}

/// The salt that turns client keys into [`KeyHash`]es (`API_KEY_SALT`).
pub struct KeySalt {
    mac: Hmac<Sha256>,
}

impl KeySalt {
    pub fn new(salt: &SecretBox<[u8]>) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(salt.expose_secret())
            .expect("HMAC accepts keys of any length");
        KeySalt { mac }
    }

    pub fn from_secret_string(salt: &SecretString) -> Self {
        Self::new(&SecretBox::from(
            salt.expose_secret().as_bytes().to_vec().into_boxed_slice(),
        ))
    }

    /// Reads the salt kept in `path`, or creates one (32 random bytes, mode 0600) when there
    /// is none, so that hashes stay comparable across restarts when `API_KEY_SALT` is unset.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) if !bytes.is_empty() => {
                return Ok(Self::new(&SecretBox::from(bytes.into_boxed_slice())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            crate::atomic_file::create_private_dir(dir)?;
        }
        let mut file = private_file_options().open(path)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        Ok(Self::new(&SecretBox::from(bytes.into_boxed_slice())))
    }

    pub fn hash(&self, key: &str) -> KeyHash {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        KeyHash(mac.finalize().into_bytes().into())
    }
}

fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_prefix_length_and_alphabet() {
        let live = generate(KeyKind::Live).unwrap();
        let key = live.expose_secret();
        assert!(key.starts_with("cnp_live_"));
        assert_eq!(key.len(), 52);
        let body = &key[LIVE_PREFIX.len()..];
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let test = generate(KeyKind::Test).unwrap();
        assert!(test.expose_secret().starts_with("cnp_test_"));
        assert_ne!(
            generate(KeyKind::Live).unwrap().expose_secret(),
            live.expose_secret()
        );
    }

    #[test]
    fn hashes_depend_on_salt_and_key() {
        let a = KeySalt::from_secret_string(&SecretString::from("salt-a"));
        let b = KeySalt::from_secret_string(&SecretString::from("salt-b"));
        assert_eq!(a.hash("k1"), a.hash("k1"));
        assert_ne!(a.hash("k1"), a.hash("k2"));
        assert_ne!(a.hash("k1"), b.hash("k1"));
        assert!(a.hash("k1").ct_eq(&a.hash("k1")));
        assert_eq!(a.hash("k1").to_string().len(), 64);
    }

    #[test]
    fn salt_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/api_key_salt");
        let first = KeySalt::load_or_create(&path).unwrap().hash("k");
        let second = KeySalt::load_or_create(&path).unwrap().hash("k");
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
