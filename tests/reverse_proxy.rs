//! Behind a reverse proxy (issue 20): the client's address comes from `X-Real-IP` /
//! `X-Forwarded-For` only when the peer is in `TRUSTED_PROXIES`, and `ALLOWED_IPS` refuses
//! everyone else with a recorded 403.
//!
//! Clients are told apart by their source address: Linux routes all of 127.0.0.0/8 to the
//! loopback interface, so a client bound to 127.0.0.2 and one bound to 127.0.0.3 are two
//! machines as far as nginx and the proxy can tell, and the address recorded shows whose
//! word was taken. The nginx test runs Debian's real nginx, unprivileged in a temporary
//! directory, with `docs/nginx/claude-nexus.conf` (the file `docs/deployment.md` shows), TLS
//! included.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const KEY: &str = "cnp_live_reverseproxyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

const NGINX_CONF: &str = include_str!("../docs/nginx/claude-nexus.conf");
const DEPLOYMENT: &str = include_str!("../docs/deployment.md");

/// A client whose connections come from `source` (a 127.x.y.z address), trusting `ca` for
/// TLS when given.
fn client_from(source: &str, ca: Option<&[u8]>) -> reqwest::Client {
    let _ = http(); // installs the TLS provider
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<IpAddr>().unwrap());
    if let Some(pem) = ca {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(pem).unwrap()]);
    }
    builder.build().unwrap()
}

/// `POST /v1/messages` (JSON) at `base` from `client`, with `headers` added; the status.
async fn message(client: &reqwest::Client, base: &str, key: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .body(MESSAGE_JSON);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// (client_ip, status, error) of every row, oldest first.
async fn recorded(proxy: &mut TestProxy) -> Vec<(String, String, Option<String>)> {
    let db = proxy.stop_and_open_db().await;
    db.text_rows(
        "SELECT client_ip, CAST(response_status AS TEXT), error FROM api_requests \
         ORDER BY timestamp, request_id",
    )
    .await
    .into_iter()
    .map(|row| {
        (
            row[0].clone().unwrap_or_default(),
            row[1].clone().unwrap(),
            row[2].clone(),
        )
    })
    .collect()
}

const SPOOFED: &[(&str, &str)] = &[
    ("x-real-ip", "203.0.113.9"),
    ("x-forwarded-for", "198.51.100.7"),
];

#[tokio::test]
async fn spoofed_headers_from_an_untrusted_peer_are_ignored() {
    let mock = MockUpstream::start().await;
    // No TRUSTED_PROXIES (the default): nobody's headers are believed.
    let mut proxy = proxy_with_account(&mock, KEY).await;
    let base = proxy.url("");
    assert_eq!(
        message(&client_from("127.0.0.3", None), &base, KEY, SPOOFED).await,
        200
    );
    let mut trusting = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await;
    let base = trusting.url("");
    // A peer that is not the trusted proxy: its socket address, whatever it writes.
    assert_eq!(
        message(&client_from("127.0.0.4", None), &base, KEY, SPOOFED).await,
        200
    );
    // The trusted proxy's word is taken.
    let named = [("x-real-ip", "203.0.113.9")];
    assert_eq!(
        message(&client_from("127.0.0.1", None), &base, KEY, &named).await,
        200
    );

    let rows = recorded(&mut proxy).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "127.0.0.3");
    let rows = recorded(&mut trusting).await;
    let ips: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ips, ["127.0.0.4", "203.0.113.9"]);
}

#[tokio::test]
async fn allowed_ips_refuse_other_clients_with_403_and_record_them() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .env("ALLOWED_IPS", "127.0.0.2, 10.0.0.0/8")
        .start()
        .await;
    let base = proxy.url("");
    let allowed = client_from("127.0.0.2", None);
    let other = client_from("127.0.0.3", None);
    let trusted_proxy = client_from("127.0.0.1", None);

    assert_eq!(message(&allowed, &base, KEY, &[]).await, 200);
    // Refused before authentication: no key, a wrong one and the right one alike.
    let response = other
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", KEY)
        .body(MESSAGE_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(message(&other, &base, "cnp_live_wrong", &[]).await, 403);
    // Naming an allowed address does not help a peer that is not the trusted proxy.
    let pretend = [("x-real-ip", "127.0.0.2")];
    assert_eq!(message(&other, &base, KEY, &pretend).await, 403);
    // The trusted proxy is judged by the client it names, not by its own address.
    assert_eq!(message(&trusted_proxy, &base, KEY, &[]).await, 403);
    let named = [("x-forwarded-for", "10.1.2.3")];
    assert_eq!(message(&trusted_proxy, &base, KEY, &named).await, 200);
    // The port's other routes too.
    let health = other.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 403);
    assert_eq!(mock.received().len(), 2, "nothing refused went upstream");

    let rows = recorded(&mut proxy).await;
    let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("127.0.0.2", "200"),
            ("127.0.0.3", "403"),
            ("127.0.0.3", "403"),
            ("127.0.0.3", "403"),
            ("127.0.0.1", "403"),
            ("10.1.2.3", "200"),
        ]
    );
    assert!(
        rows[1].2.as_deref().unwrap().contains("ALLOWED_IPS"),
        "{rows:?}"
    );
}

#[test]
fn the_deployment_guide_shows_the_tested_nginx_configuration() {
    assert!(
        DEPLOYMENT.contains(NGINX_CONF),
        "docs/deployment.md must include docs/nginx/claude-nexus.conf verbatim"
    );
}

/// Real nginx in front of `proxy`, configured by `docs/nginx/claude-nexus.conf` with TLS,
/// running as this user in its own directory; stopped when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>`
    base: String,
    /// The certificate nginx presents (self-signed, for 127.0.0.1).
    cert: Vec<u8>,
}

fn nginx_binary() -> Option<PathBuf> {
    let installed = Path::new("/usr/sbin/nginx");
    if installed.exists() {
        return Some(installed.to_path_buf());
    }
    let on_path = Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status();
    on_path.is_ok().then(|| PathBuf::from("nginx"))
}

/// A port free right now: nginx cannot be given port 0.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `text` with `from` replaced by `to`, which must occur exactly `times` times: a change to the
/// documented file that this test no longer understands fails here, not silently.
fn replace(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "docs/nginx/claude-nexus.conf no longer has {from:?}"
    );
    text.replace(from, to)
}

impl Nginx {
    /// `None` when nginx is not installed (outside CI; scripts/test.sh installs it).
    async fn start(proxy: SocketAddr) -> Option<Nginx> {
        let Some(binary) = nginx_binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is missing; scripts/test.sh installs it"
            );
            eprintln!("skipped: nginx is not installed (scripts/test.sh installs it)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(dir.path().join("privkey.pem"))
            .arg("-out")
            .arg(dir.path().join("fullchain.pem"))
            .stderr(Stdio::null())
            .status()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(made.success(), "openssl could not make a certificate");
        let port = free_port();
        let site = replace(
            NGINX_CONF,
            "listen 443 ssl;\n    listen [::]:443 ssl;",
            &format!("listen 127.0.0.1:{port} ssl;"),
            1,
        );
        let site = replace(
            &site,
            "/etc/letsencrypt/live/claude.example.com/",
            &format!("{d}/"),
            2,
        );
        let site = replace(
            &site,
            "server 127.0.0.1:3000;",
            &format!("server {proxy};"),
            1,
        );
        std::fs::write(dir.path().join("claude-nexus.conf"), site).unwrap();
        // What Debian's /etc/nginx/nginx.conf gives a site, in this directory, in the
        // foreground, one process, as this user.
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               include {d}/claude-nexus.conf;\n\
             }}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Nginx {
            child,
            cert: std::fs::read(dir.path().join("fullchain.pem")).unwrap(),
            dir,
            base: format!("https://127.0.0.1:{port}"),
        };
        nginx.ready(port).await;
        Some(nginx)
    }

    /// Polls until nginx accepts connections; fails with its error log if it exits.
    async fn ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not ready:\n{}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// A client connecting from `source`, trusting this nginx's certificate.
    fn client_from(&self, source: &str) -> reqwest::Client {
        client_from(source, Some(&self.cert))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn behind_nginx_the_client_is_recorded_streams_flow_and_lockouts_are_per_client() {
    let mock = MockUpstream::start().await;
    let mut proxy = ProxyBuilder::new(&mock)
        .account(api_key_account("a.example", "acc_a", KEY))
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .env("AUTH_LOCKOUT_KEYS", "2")
        .start()
        .await;
    let Some(nginx) = Nginx::start(proxy.addr).await else {
        return;
    };
    let alice = nginx.client_from("127.0.0.2");
    let mallory = nginx.client_from("127.0.0.3");

    // 1. The client's own address, whatever it claims: nginx overwrites both headers.
    assert_eq!(message(&alice, &nginx.base, KEY, SPOOFED).await, 200);
    // What nginx says about its hop stays here: the team's addresses are not the upstream's.
    let forwarded = &mock.received()[0].headers;
    for header in ["x-real-ip", "x-forwarded-for", "x-forwarded-proto"] {
        assert!(!forwarded.contains_key(header), "{header} went upstream");
    }

    // 2. A stream arrives event by event: the first event is here while the upstream still
    // holds back the rest (`gate`), which a buffering nginx would sit on.
    let mut received = Vec::new();
    let first = SSE_EVENTS[0].as_bytes();
    let first_event = async {
        let mut stream = alice
            .post(format!("{}/v1/messages", nginx.base))
            .header("x-api-key", KEY)
            .header("x-mock", "gate")
            .body(MESSAGE_SSE)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        while received.len() < first.len() {
            let chunk = stream.chunk().await.unwrap().expect("the stream went on");
            received.extend_from_slice(&chunk);
        }
        stream
    };
    let mut stream = tokio::time::timeout(Duration::from_secs(20), first_event)
        .await
        .expect("the first event came through nginx before the upstream sent the rest");
    assert_eq!(received, first);
    mock.release(1);
    read_rest(&mut stream, &mut received).await;
    assert_eq!(String::from_utf8(received).unwrap(), sse_body());

    // 3. Wrong keys lock out the client that sent them, not everyone behind nginx.
    for n in 0..3 {
        let wrong = format!("cnp_live_wrong{n}");
        assert_eq!(message(&mallory, &nginx.base, &wrong, &[]).await, 401);
    }
    assert_eq!(message(&mallory, &nginx.base, KEY, &[]).await, 429);
    assert_eq!(message(&alice, &nginx.base, KEY, &[]).await, 200);

    // 4. Straight to the proxy, around nginx: the socket's address, the headers ignored.
    let direct = client_from("127.0.0.4", None);
    let pretend = [("x-real-ip", "127.0.0.2"), ("x-forwarded-for", "127.0.0.2")];
    assert_eq!(message(&direct, &proxy.url(""), KEY, &pretend).await, 200);

    drop(nginx);
    let rows = recorded(&mut proxy).await;
    let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("127.0.0.2", "200"),
            ("127.0.0.2", "200"),
            ("127.0.0.3", "401"),
            ("127.0.0.3", "401"),
            ("127.0.0.3", "401"),
            ("127.0.0.3", "429"),
            ("127.0.0.2", "200"),
            ("127.0.0.4", "200"),
        ]
    );
}
