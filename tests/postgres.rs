//! PostgreSQL only (the README's test command runs these in its PostgreSQL pass, with
//! `TEST_DATABASE_URL`): `migrate` as the owner, `serve` refusing an outdated schema, and a
//! server running under the least-privilege role of `docs/postgres-grants.sql`.

mod common;

use std::process::Command;

use common::process::{Nexus, Running};
use common::*;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

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
    Nexus::new(dir.path())
        .credentials(dir.path())
        .database(database_url)
        .env("PORT", "0")
        .output(args)
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
        let r = send_message(&proxy, KEY, body).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let report = proxy.first_retention_pass().await;
    assert_eq!(report.status, "no_permission", "{report:?}");
    let (status, health) = get_health(&proxy).await;
    assert_eq!(status, 200, "the server keeps serving");
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
    let e = claude_nexus::Server::bind(
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
    let (_, health) = get_health(&proxy).await;
    assert_eq!(health["database"]["status"], "ok");
    let url = health["database"]["url"].as_str().unwrap();
    assert!(url.contains("sslmode=verify-full"), "{url}");
}

/// Two `claude-nexus serve` processes on one database and one credentials directory, as on a
/// shared host: an expiring OAuth token is refreshed once (the other instance waits on the
/// database's lock and picks up the saved token), and both instances' records land, none
/// twice, none missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_refresh_once_and_record_everything() {
    let Some(server) = server() else { return };
    let database = TestDatabase::postgres(&server).await;
    assert!(nexus(&database.url, &["migrate"]).status.success());
    let mock = MockUpstream::start().await;
    let oauth = MockOAuth::start().await;
    oauth.hold();

    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let expires_soon = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 60_000;
    write_account(
        &credentials,
        &AccountFile {
            domain: "team.example",
            json: format!(
                r#"{{"type":"oauth","accountId":"acc_team","client_api_key":"{KEY}","oauth":{{"accessToken":"{OAUTH_TOKEN}","refreshToken":"sk-ant-ort01-refresh","expiresAt":{expires_soon},"scopes":["user:inference"],"isMax":true}}}}"#
            ),
        },
    );
    let instance = |name: &str| {
        Nexus::new(dir.path().join(name))
            .credentials(&credentials)
            .database(&database.url)
            .upstream(&mock)
            .env("API_KEY_SALT", "shared-salt")
            .oauth(&oauth)
    };

    let (mut a, addr_a) = Running::start(instance("a"));
    oauth.wait_calls(1).await; // A is refreshing, and holds the lock
    let (mut b, addr_b) = Running::start(instance("b"));
    // B may say so before it listens, among the lines `start` already read.
    b.wait_for_any(&["another instance is refreshing the OAuth token"]);
    oauth.release();
    a.wait_for("oauth token refreshed");
    b.wait_for_any(&[
        "picked up the OAuth token another instance refreshed",
        "credential file has a new OAuth token",
    ]);
    assert_eq!(oauth.calls().len(), 1, "one refresh for both instances");

    const EACH: usize = 100;
    let send = |addr: String| async move {
        let r = post_message(format!("http://{addr}/v1/messages"), KEY, MESSAGE_JSON)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    let mut statuses = Vec::new();
    for _ in 0..EACH {
        let (x, y) = tokio::join!(send(addr_a.clone()), send(addr_b.clone()));
        statuses.extend([x, y]);
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let fresh = format!("Bearer {}", refreshed_access(1));
    assert!(
        mock.received()
            .iter()
            .all(|r| r.headers["authorization"] == fresh.as_str()),
        "both instances send the refreshed token"
    );
    assert!(a.terminate().0.success());
    assert!(b.terminate().0.success());
    assert_eq!(oauth.calls().len(), 1);

    let db = database.open().await;
    let counts = db
        .text_rows("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM api_requests")
        .await;
    let total = (2 * EACH).to_string();
    assert_eq!(counts[0], vec![Some(total.clone()), Some(total)]);
}

/// Two `claude-nexus serve` processes on one database: a key created with the CLI works on
/// both, and revoking it (the incident button) reaches both, each within its next reload of
/// the keys (twice a second), without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_is_refused_by_the_other() {
    let Some(server) = server() else { return };
    let database = TestDatabase::postgres(&server).await;
    assert!(nexus(&database.url, &["migrate"]).status.success());
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    write_account(
        &credentials,
        &api_key_account("team.example", "acc_team", KEY),
    );
    let command = |data: &str| {
        Nexus::new(dir.path().join(data))
            .credentials(&credentials)
            .database(&database.url)
            .upstream(&mock)
            .env("API_KEY_SALT", "shared-salt")
    };
    let (mut a, addr_a) = Running::start(command("a"));
    let (mut b, addr_b) = Running::start(command("b"));

    let created = command("cli").output(&[
        "keys",
        "create",
        "--account",
        "team.example",
        "--label",
        "laptop",
    ]);
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("cnp_live_"));
    a.wait_for("client keys reloaded");
    b.wait_for("client keys reloaded");
    let status = |addr: &str, key: &str| {
        let (addr, key) = (addr.to_string(), key.to_string());
        async move {
            post_message(format!("http://{addr}/v1/messages"), &key, MESSAGE_JSON)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(&addr_a, &key).await, 200);
    assert_eq!(status(&addr_b, &key).await, 200);

    let revoked = command("cli").output(&[
        "keys",
        "revoke",
        "--all",
        "--account",
        "team.example",
        "--yes",
    ]);
    assert!(revoked.status.success(), "{revoked:?}");
    a.wait_for("client keys reloaded");
    b.wait_for("client keys reloaded");
    assert_eq!(status(&addr_a, &key).await, 401);
    assert_eq!(status(&addr_b, &key).await, 401);
    assert!(a.terminate().0.success());
    assert!(b.terminate().0.success());
}
