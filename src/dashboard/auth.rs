//! Dashboard authentication: the dashboard key, login sessions, the failed-login limit and
//! the `Origin` check.
//!
//! The key is `DASHBOARD_API_KEY`, or one generated at start (never optional: there is no
//! open mode). `POST /api/login` exchanges it for a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS, with an expiry); scripts may send the key as
//! `Authorization: Bearer` instead, on the dashboard and on the proxy port. Every place that
//! takes the key goes through [`Auth::check_key`]: keys are compared in constant time (SHA-256
//! of both, then `subtle`), and wrong keys are counted per client IP, logins and bearers
//! alike: after [`MAX_FAILURES`] within [`FAILURE_WINDOW`] that IP gets 429, even with the
//! right key, until the window has passed. Sessions are kept in memory as hashes of their
//! tokens. State-changing calls must come from the dashboard's own origin.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "nexus_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// Wrong keys allowed per client IP within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);

type TokenHash = [u8; 32];

fn sha256(text: &str) -> TokenHash {
    Sha256::digest(text.as_bytes()).into()
}

/// Random URL-safe text of `bytes` random bytes.
fn random_text(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// A freshly generated dashboard key (`cnd_` and 43 URL-safe characters).
pub fn generate_key() -> Result<SecretString, getrandom::Error> {
    Ok(SecretString::from(format!("cnd_{}", random_text(32)?)))
}

/// Why a presented dashboard key was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRefused {
    WrongKey,
    /// Too many failures from this IP; try again after this long.
    RateLimited(Duration),
}

struct Failures {
    count: u32,
    window_start: Instant,
}

pub struct Auth {
    key_hash: TokenHash,
    sessions: Mutex<HashMap<TokenHash, Instant>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Auth {
    pub fn new(key: &SecretString) -> Auth {
        Auth {
            key_hash: sha256(key.expose_secret()),
            sessions: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Constant-time comparison with the dashboard key.
    fn is_key(&self, presented: &str) -> bool {
        sha256(presented).ct_eq(&self.key_hash).into()
    }

    /// Checks a dashboard key presented from `ip` (a login or a bearer): refused while `ip`
    /// has too many recent failures, counted as one when wrong.
    pub fn check_key(&self, ip: IpAddr, presented: &str) -> Result<(), KeyRefused> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("failures lock");
        failures.retain(|_, f| now.duration_since(f.window_start) < FAILURE_WINDOW);
        if let Some(f) = failures.get(&ip)
            && f.count >= MAX_FAILURES
        {
            return Err(KeyRefused::RateLimited(
                FAILURE_WINDOW.saturating_sub(now.duration_since(f.window_start)),
            ));
        }
        if !self.is_key(presented) {
            let f = failures.entry(ip).or_insert(Failures {
                count: 0,
                window_start: now,
            });
            f.count += 1;
            tracing::warn!(client_ip = %ip, failures = f.count, "dashboard key refused: wrong key");
            return Err(KeyRefused::WrongKey);
        }
        failures.remove(&ip);
        Ok(())
    }

    /// A new session, for a caller whose key [`Auth::check_key`] accepted.
    pub fn start_session(&self) -> Result<SecretString, getrandom::Error> {
        let token = random_text(32)?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, expires| *expires > now);
        sessions.insert(sha256(&token), now + SESSION_TTL);
        Ok(SecretString::from(token))
    }

    pub fn session_valid(&self, token: &str) -> bool {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .get(&sha256(token))
            .is_some_and(|expires| *expires > Instant::now())
    }

    pub fn logout(&self, token: &str) {
        self.sessions
            .lock()
            .expect("sessions lock")
            .remove(&sha256(token));
    }
}

/// Whether `method` changes state (and so must pass the `Origin` check).
pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The `Origin` check: when a browser sends `Origin`, it must be this server's own
/// (`http(s)://` + the `Host` it was asked for). A request without `Origin` passes only when
/// `bearer` (a script with the key; browsers always send `Origin` on state-changing fetches).
pub fn origin_allowed(headers: &HeaderMap, bearer: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return bearer;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// The key sent as `Authorization: Bearer`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the request came through a TLS-terminating proxy (then the cookie is `Secure`).
/// A forged header can only make the cookie stricter.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&SecretString::from("the-dashboard-key-0123"))
    }

    #[test]
    fn a_session_lasts_until_logout() {
        let auth = auth();
        let token = auth.start_session().unwrap();
        assert!(auth.session_valid(token.expose_secret()));
        assert!(!auth.session_valid("something-else"));
        auth.logout(token.expose_secret());
        assert!(!auth.session_valid(token.expose_secret()));
    }

    #[test]
    fn wrong_keys_are_limited_per_ip() {
        let auth = auth();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(auth.check_key(ip, "the-dashboard-key-0123"), Ok(()));
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.check_key(ip, "wrong"), Err(KeyRefused::WrongKey));
        }
        // Even the right key is refused now, from that IP only.
        assert!(matches!(
            auth.check_key(ip, "the-dashboard-key-0123"),
            Err(KeyRefused::RateLimited(_))
        ));
        assert_eq!(auth.check_key(other, "the-dashboard-key-0123"), Ok(()));
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:3001".parse().unwrap());
        assert!(!origin_allowed(&h, false));
        assert!(origin_allowed(&h, true));
        h.insert(header::ORIGIN, "http://127.0.0.1:3001".parse().unwrap());
        assert!(origin_allowed(&h, false));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!origin_allowed(&h, true));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_allowed(&h, false));
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().starts_with("cnd_"));
        assert_eq!(a.expose_secret().len(), 4 + 43);
    }
}
