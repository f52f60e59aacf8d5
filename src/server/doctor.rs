//! `claude-nexus doctor`: the security checklist ([`checks`]) run against what the server
//! would start with, and nothing more: the data key is looked up where the server looks for
//! it but never made, and the database is opened only to verify it (a SQLite file that does
//! not exist yet is not created, and nothing is migrated).

use crate::checks::{self, Check, Settings};
use crate::config::{Config, DatabaseConfig};
use crate::crypto;
use crate::secrets::SecretStore;
use crate::store::{Migrations, Store, StoreError};

/// The checklist's settings for `config`, with where the storage data key is (from the
/// environment, `secrets` or the data directory; `None` when there is none yet).
pub fn settings(config: &Config, secrets: &dyn SecretStore) -> Settings {
    let storage_key = crypto::resolve(
        config.storage_encryption_key.as_ref(),
        secrets,
        &config.data_dir,
        false,
    )
    .ok()
    .flatten()
    .map(|(_, source)| source);
    Settings {
        storage_key,
        ..Settings::from_config(config)
    }
}

/// What `doctor` found.
pub struct Report {
    pub checks: Vec<Check>,
    /// Why the database could not be opened (its checks then only warn).
    pub database_error: Option<StoreError>,
}

/// Runs the checklist for `config`, keychain entries read from `secrets`.
pub async fn run(config: &Config, secrets: &dyn SecretStore) -> Report {
    let settings = settings(config, secrets);
    let exists = match &config.database {
        DatabaseConfig::Sqlite(path) => path.exists(),
        DatabaseConfig::Postgres(_) => true,
    };
    let (store, database_error) = if exists {
        match Store::open(
            &config.database,
            Migrations::Verify,
            config.slow_query_threshold,
        )
        .await
        {
            Ok(store) => (Some(store), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let checks = checks::run(&settings, store.as_ref()).await;
    if let Some(store) = store {
        store.close().await;
    }
    Report {
        checks,
        database_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeySource;
    use crate::secrets::MemorySecrets;
    use base64::Engine;
    use secrecy::SecretString;
    use std::collections::HashMap;

    fn config(dir: &std::path::Path) -> Config {
        let map = HashMap::from([
            ("NEXUS_DATA_DIR".to_string(), dir.display().to_string()),
            (
                "DATABASE_URL".to_string(),
                format!("sqlite://{}", dir.join("requests.db").display()),
            ),
            (
                "CREDENTIALS_DIR".to_string(),
                dir.join("credentials").display().to_string(),
            ),
        ]);
        Config::from_map(&map).unwrap()
    }

    #[test]
    fn the_data_key_is_found_where_the_server_looks_and_never_made() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let secrets = MemorySecrets::default();
        assert_eq!(settings(&config, &secrets).storage_key, None);
        assert!(!dir.path().join("storage_key").exists(), "not made");
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        secrets
            .set(crypto::KEYCHAIN_ENTRY, &SecretString::from(key))
            .unwrap();
        assert_eq!(
            settings(&config, &secrets).storage_key,
            Some(KeySource::Keychain)
        );
    }

    #[tokio::test]
    async fn a_missing_database_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let report = run(&config, &MemorySecrets::default()).await;
        assert!(report.database_error.is_none());
        assert!(!dir.path().join("requests.db").exists());
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.id == "database" && c.status == checks::Status::Warn)
        );
    }
}
