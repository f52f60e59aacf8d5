//! Client keys with a lifecycle: created, rotated and revoked in the database (`client_keys`,
//! through [`crate::store`]), looked up in memory on every request.
//!
//! The request path never asks the database: [`ClientKeys`] is an `ArcSwap` snapshot of every
//! key, keyed by its salted hash (revoked ones too, so that a request refused for a revoked
//! key records which key it was). A task owned by the server ([`spawn_refresher`]) asks the
//! database every [`REFRESH_INTERVAL`] for the table's version (which a trigger moves on every
//! change to a key) and reloads the snapshot when it moved, so a key created or revoked by the
//! CLI (or by another instance on the same PostgreSQL, or by hand in SQL) takes effect within
//! half a second, without a restart; the CLI returns after [`SETTLE`], when the change is in
//! effect. The dashboard refreshes the snapshot itself before it answers, so its changes are
//! in effect on its own proxy by then. Expiry is checked against the clock on each lookup, so
//! an expired key stops working the moment it expires. `last_used_at` is moved forward by the
//! record writer, one `UPDATE` per key and batch.
//!
//! A credential file's plaintext `client_api_key` (the original's format) keeps working as an
//! unlabelled key of that account; its requests are recorded with the key id `file:<domain>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::keys::{self, KeyHash, KeyKind, KeySalt};
use crate::store::{ClientKeyRow, ClientKeysVersion, Store, StoreError};

/// How often the server checks whether keys changed (one row read by its primary key: cheap
/// enough to ask twice a second).
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);
/// How long `keys create|rotate|revoke` wait before returning, so that a running proxy that
/// answers its database has applied the change by then: two refresh intervals.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Characters of a key kept for display: `cnp_live_` and four of the random part.
const PREFIX_CHARS: usize = keys::LIVE_PREFIX.len() + 4;
/// The key id recorded for a credential file's `client_api_key`.
pub const FILE_KEY_PREFIX: &str = "file:";

/// A key of the database, as the proxy sees it.
#[derive(Debug)]
pub struct LiveKey {
    pub id: String,
    /// The domain of its account.
    pub account: String,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked: bool,
}

impl LiveKey {
    /// Whether the proxy accepts it at `now`: neither revoked nor expired.
    pub fn is_valid(&self, now: OffsetDateTime) -> bool {
        !self.revoked && self.expires_at.is_none_or(|at| at > now)
    }
}

/// The database's client keys, in memory.
pub struct ClientKeys {
    by_hash: ArcSwap<HashMap<KeyHash, Arc<LiveKey>>>,
    /// The table's version the map was loaded at; held through a refresh, so that two
    /// refreshes (the refresher's and the dashboard's after a change) never store out of order.
    version: tokio::sync::Mutex<Option<ClientKeysVersion>>,
    reloads: watch::Sender<u64>,
}

impl Default for ClientKeys {
    fn default() -> Self {
        ClientKeys {
            by_hash: ArcSwap::default(),
            version: tokio::sync::Mutex::default(),
            reloads: watch::Sender::new(0),
        }
    }
}

impl ClientKeys {
    /// A channel that ticks after every reload (the value counts reloads).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// The key with this hash (revoked or expired ones too). No lock, no I/O.
    pub fn lookup(&self, hash: &KeyHash) -> Option<Arc<LiveKey>> {
        self.by_hash.load().get(hash).cloned()
    }

    /// Every key, revoked and expired ones included.
    pub fn all(&self) -> Vec<Arc<LiveKey>> {
        self.by_hash.load().values().cloned().collect()
    }

    /// Every key's hash by its id.
    pub fn hashes_by_id(&self) -> HashMap<String, KeyHash> {
        self.by_hash
            .load()
            .iter()
            .map(|(hash, key)| (key.id.clone(), *hash))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_hash.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reloads the keys when the table changed since the last look; `true` when it did.
    pub async fn refresh(&self, store: &Store) -> Result<bool, StoreError> {
        let mut loaded = self.version.lock().await;
        let version = store.client_keys_version().await?;
        if *loaded == Some(version) {
            return Ok(false);
        }
        let rows = store.all_client_keys().await?;
        let map = rows
            .into_iter()
            .map(|row| {
                (
                    row.key_hash,
                    Arc::new(LiveKey {
                        id: row.id,
                        account: row.account.to_ascii_lowercase(),
                        expires_at: row.expires_at,
                        revoked: row.revoked_at.is_some(),
                    }),
                )
            })
            .collect();
        self.by_hash.store(Arc::new(map));
        *loaded = Some(version);
        self.reloads.send_modify(|n| *n += 1);
        Ok(true)
    }
}

/// Keeps `keys` current until `stop`: a version check every [`REFRESH_INTERVAL`].
pub fn spawn_refresher(
    keys: Arc<ClientKeys>,
    store: Store,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            match keys.refresh(&store).await {
                Ok(changed) => {
                    if changed {
                        tracing::info!(
                            keys = keys.len(),
                            "client keys reloaded (revoked included)"
                        );
                    }
                    if std::mem::take(&mut failing) {
                        tracing::info!("client keys: database answers again");
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(
                            "cannot check client keys ({e}); the last loaded keys stay in use"
                        );
                    }
                }
            }
        }
    })
}

/// The salt the proxy hashes client keys with: `API_KEY_SALT`, or the one kept in the data
/// directory (created on first use).
pub fn salt(config: &Config) -> std::io::Result<KeySalt> {
    match &config.api_key_salt {
        Some(salt) => Ok(KeySalt::from_secret_string(salt)),
        None => KeySalt::load_or_create(&config.data_dir.join("api_key_salt")),
    }
}

/// A key just created: the row stored, and the key itself, to be shown once.
pub struct CreatedKey {
    pub row: ClientKeyRow,
    pub key: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    #[error("no client key with id {0}")]
    NotFound(String),
    #[error("client key {0} is revoked")]
    Revoked(String),
}

/// What a new key is for.
pub struct NewKey<'a> {
    pub account: &'a str,
    pub label: Option<&'a str>,
    pub expires_in: Option<Duration>,
    pub rotated_from: Option<&'a str>,
}

/// Creates a key and stores its hash.
pub async fn create(
    store: &Store,
    salt: &KeySalt,
    new: &NewKey<'_>,
) -> Result<CreatedKey, KeyError> {
    let key = keys::generate(KeyKind::Live)?;
    let now = OffsetDateTime::now_utc();
    let row = ClientKeyRow {
        id: new_id()?,
        account: new.account.to_ascii_lowercase(),
        label: new.label.map(str::to_string),
        key_hash: salt.hash(key.expose_secret()),
        prefix: key.expose_secret()[..PREFIX_CHARS].to_string(),
        created_at: now,
        expires_at: new
            .expires_in
            .and_then(|d| time::Duration::try_from(d).ok())
            .map(|d| now + d),
        last_used_at: None,
        revoked_at: None,
        rotated_from: new.rotated_from.map(str::to_string),
    };
    store.insert_client_key(&row).await?;
    Ok(CreatedKey { row, key })
}

/// Creates the successor of key `id`: same account and label, the same lifetime when it had
/// one (unless `expires_in` says otherwise). The old key stays valid until revoked.
pub async fn rotate(
    store: &Store,
    salt: &KeySalt,
    id: &str,
    expires_in: Option<Duration>,
) -> Result<(ClientKeyRow, CreatedKey), KeyError> {
    let old = find(store, id).await?;
    if old.revoked_at.is_some() {
        return Err(KeyError::Revoked(id.to_string()));
    }
    let lifetime = expires_in.or_else(|| {
        old.expires_at
            .and_then(|at| Duration::try_from(at - old.created_at).ok())
    });
    let created = create(
        store,
        salt,
        &NewKey {
            account: &old.account,
            label: old.label.as_deref(),
            expires_in: lifetime,
            rotated_from: Some(&old.id),
        },
    )
    .await?;
    Ok((old, created))
}

/// Takes a plaintext key (a credential file's `client_api_key`) into the database as a key of
/// `account`, labelled "imported from file": the same key keeps working, and only its hash is
/// stored. `false` when a key with its hash is there already.
pub async fn adopt(
    store: &Store,
    salt: &KeySalt,
    account: &str,
    key: &SecretString,
) -> Result<bool, KeyError> {
    let hash = salt.hash(key.expose_secret());
    if store
        .client_keys(None)
        .await?
        .iter()
        .any(|k| k.key_hash == hash)
    {
        return Ok(false);
    }
    store
        .insert_client_key(&ClientKeyRow {
            id: new_id()?,
            account: account.to_ascii_lowercase(),
            label: Some("imported from file".into()),
            key_hash: hash,
            prefix: prefix_of(key.expose_secret()),
            created_at: OffsetDateTime::now_utc(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            rotated_from: None,
        })
        .await?;
    Ok(true)
}

/// The key `id`, revoked or not.
pub async fn find(store: &Store, id: &str) -> Result<ClientKeyRow, KeyError> {
    store
        .client_keys(None)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| KeyError::NotFound(id.to_string()))
}

/// `ck_` and 12 hex digits: short enough to type, random enough never to collide in one
/// installation (the primary key refuses the rare repeat).
fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes)?;
    Ok(format!("ck_{}", hex::encode(bytes)))
}

/// How a key's prefix is shown: `cnp_live_Ab12…`.
pub fn display_prefix(prefix: &str) -> String {
    format!("{prefix}…")
}

/// The prefix of a plaintext key, for display (never more of it): `cnp_live_` and four
/// characters, or half of a key too short for that (a credential file's `client_api_key` may
/// be any text), so that no display shows a whole key.
pub fn prefix_of(key: &str) -> String {
    let shown = PREFIX_CHARS.min(key.chars().count() / 2);
    key.chars().take(shown).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_distinct() {
        let a = new_id().unwrap();
        assert!(a.starts_with("ck_") && a.len() == 15, "{a}");
        assert_ne!(a, new_id().unwrap());
    }

    #[tokio::test]
    async fn a_file_key_is_adopted_once_with_its_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &crate::config::DatabaseConfig::Sqlite(dir.path().join("k.db")),
            crate::store::Migrations::Apply,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let salt = KeySalt::from_secret_string(&SecretString::from("salt"));
        let key = keys::generate(KeyKind::Live).unwrap();
        assert!(adopt(&store, &salt, "T.example", &key).await.unwrap());
        assert!(!adopt(&store, &salt, "t.example", &key).await.unwrap());
        let rows = store.client_keys(None).await.unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert!(row.id.starts_with("ck_"), "{}", row.id);
        assert_eq!(row.account, "t.example");
        assert_eq!(row.label.as_deref(), Some("imported from file"));
        assert_eq!(row.key_hash, salt.hash(key.expose_secret()));
        assert_eq!(row.prefix, prefix_of(key.expose_secret()));
        store.close().await;
    }

    #[test]
    fn prefix_shows_only_four_random_characters() {
        let key = keys::generate(KeyKind::Live).unwrap();
        let prefix = prefix_of(key.expose_secret());
        assert_eq!(prefix.len(), 13);
        assert!(key.expose_secret().starts_with(&prefix));
    }

    #[test]
    fn a_short_key_shows_half_of_itself_at_most() {
        assert_eq!(prefix_of("cnp_live_abc"), "cnp_li");
        assert_eq!(prefix_of("k"), "");
        assert_eq!(prefix_of("é中😀-é中"), "é中😀");
    }

    #[test]
    fn expiry_is_checked_against_the_clock_and_revoked_keys_never_pass() {
        let now = OffsetDateTime::now_utc();
        let key = |expires_at, revoked| LiveKey {
            id: "ck_1".into(),
            account: "a".into(),
            expires_at,
            revoked,
        };
        assert!(key(None, false).is_valid(now));
        assert!(!key(Some(now), false).is_valid(now));
        assert!(key(Some(now + time::Duration::seconds(1)), false).is_valid(now));
        assert!(!key(None, true).is_valid(now));
    }
}
