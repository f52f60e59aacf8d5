//! PostgreSQL only (the README's test command runs these in its PostgreSQL pass, with
//! `TEST_DATABASE_URL`): `migrate` as the owner, `serve` refusing an outdated schema, and a
//! server running under the least-privilege role of `docs/postgres-grants.sql`.

mod common;

use std::process::{Command, Stdio};

use common::*;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

const BIN: &str = env!("CARGO_BIN_EXE_claude-nexus");
const KEY: &str = "cnp_live_postgres00000000000000000000000000000000000";
const GRANTS: &str = include_str!("../docs/postgres-grants.sql");

/// The PostgreSQL server, or `None` (and a note) in the SQLite pass.
fn server() -> Option<String> {
    let server = db::postgres_server();
    if server.is_none() {
        eprintln!("TEST_DATABASE_URL is not set: PostgreSQL tests run in the PostgreSQL pass");
    }
    server
}

async fn execute(url: &str, sql: String) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// `url` with another user name.
fn as_user(url: &str, user: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username(user).unwrap();
    url.to_string()
}

fn nexus(database_url: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NEXUS_DATA_DIR", dir.path())
        .env("CREDENTIALS_DIR", dir.path())
        .env("DATABASE_URL", database_url)
        .env("PORT", "0")
        .env("DASHBOARD_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_schema_until_migrate_runs() {
    let Some(server) = server() else { return };
    let database = TestDatabase::postgres(&server).await;

    let refused = nexus(&database.url, &["serve"]);
    assert!(!refused.status.success());
    let log = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(log.contains("run `claude-nexus migrate`"), "{log}");

    for _ in 0..2 {
        let migrated = nexus(&database.url, &["migrate"]);
        assert!(migrated.status.success(), "{migrated:?}");
    }
    let db = database.open().await;
    assert_eq!(db.number("SELECT COUNT(*) FROM api_requests").await, 0);
}

#[tokio::test]
async fn least_privilege_role_serves_and_retention_reports_its_missing_grant() {
    let Some(server) = server() else { return };
    let database = TestDatabase::postgres(&server).await;
    let role = format!("nexus_app_{}", uuid::Uuid::now_v7().simple());
    assert!(nexus(&database.url, &["migrate"]).status.success());
    execute(&server, format!("CREATE ROLE {role} LOGIN")).await;
    execute(&database.url, GRANTS.replace("nexus_app", &role)).await;

    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("DATABASE_URL", &as_user(&database.url, &role))
        .env("AUTO_MIGRATE", "false")
        .env("STORAGE_ENABLED", "true")
        .env("RETENTION_DAYS", "30")
        .start()
        .await;
    for body in [MESSAGE_JSON, MESSAGE_SSE] {
        let r = http()
            .post(proxy.url("/v1/messages"))
            .header("x-api-key", KEY)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let report = proxy.first_retention_pass().await;
    assert_eq!(report.status, "no_permission", "{report:?}");
    let health = http().get(proxy.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server keeps serving");
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["retention"]["status"], "no_permission");

    // The role cannot change the schema or delete records.
    let mut app = PgConnection::connect(&as_user(&database.url, &role))
        .await
        .unwrap();
    for forbidden in [
        "DROP TABLE streaming_chunks",
        "DELETE FROM api_requests",
        "CREATE TABLE x (y INT)",
    ] {
        let e = sqlx::raw_sql(forbidden)
            .execute(&mut app)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("permission denied") || e.to_string().contains("must be owner"),
            "{forbidden}: {e}"
        );
    }

    // With the optional step of the script, retention works.
    let delete_step = GRANTS
        .lines()
        .find_map(|line| line.strip_prefix("-- GRANT DELETE"))
        .expect("the script offers DELETE as a commented step");
    execute(
        &database.url,
        format!("GRANT DELETE{delete_step}").replace("nexus_app", &role),
    )
    .await;
    proxy.restart().await;
    assert_eq!(proxy.first_retention_pass().await.status, "ok");

    let db = proxy.stop_and_open_db().await;
    let rows = rows(&db).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        db.number("SELECT COUNT(*) FROM streaming_chunks").await,
        SSE_EVENTS.len() as i64
    );
}

#[tokio::test]
async fn tls_with_sslmode_require_and_verify_full() {
    let Some(server) = server() else { return };
    let database = TestDatabase::postgres(&server).await;
    let db = database.open().await;
    let ssl = db.text_rows("SHOW ssl").await;
    if ssl[0][0].as_deref() != Some("on") {
        eprintln!("this PostgreSQL server has ssl off: TLS not tested");
        return;
    }
    let mock = MockUpstream::start().await;
    let with_params = |params: &str| format!("{}?{params}", database.url);

    let mut proxy = ProxyBuilder::new(&mock)
        .env("DATABASE_URL", &with_params("sslmode=require"))
        .start()
        .await;
    let encrypted = db
        .text_rows("SELECT bool_and(s.ssl), COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'claude-nexus' AND a.datname = current_database()")
        .await;
    assert_eq!(encrypted[0][0].as_deref(), Some("t"), "{encrypted:?}");
    proxy.stop().await;

    // A root certificate that did not sign the server's: refused, saying why.
    let wrong_root = "/etc/ssl/certs/ca-certificates.crt";
    let config = with_params(&format!("sslmode=verify-full&sslrootcert={wrong_root}"));
    let e = claude_nexus::Server::start(
        claude_nexus::Config::from_map(
            &[
                ("DATABASE_URL".to_string(), config),
                (
                    "NEXUS_DATA_DIR".to_string(),
                    proxy.dir.path().display().to_string(),
                ),
            ]
            .into(),
        )
        .unwrap(),
    )
    .await
    .err()
    .expect("an untrusted server certificate is refused");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // The server's own certificate as root, with the name it was issued for: accepted.
    let cert = db.text_rows("SHOW ssl_cert_file").await[0][0]
        .clone()
        .unwrap();
    let names_localhost = Command::new("openssl")
        .args(["x509", "-noout", "-checkhost", "localhost", "-in", &cert])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("does match"));
    if !names_localhost {
        eprintln!("{cert} is not issued for localhost: verify-full success not tested");
        return;
    }
    let localhost = database.url.replace("127.0.0.1", "localhost");
    proxy.set_env(
        "DATABASE_URL",
        &format!("{localhost}?sslmode=verify-full&sslrootcert={cert}"),
    );
    proxy.restart().await;
    let health: serde_json::Value = http()
        .get(proxy.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["database"]["status"], "ok");
    let url = health["database"]["url"].as_str().unwrap();
    assert!(url.contains("sslmode=verify-full"), "{url}");
}
