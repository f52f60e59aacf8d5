//! The PKCE login (what `claude-nexus oauth login` and the GUI run): S256 PKCE with a verifier
//! from 32 random bytes and a separate random `state`; the user opens the authorize URL, logs
//! in, and pastes back the `code#state` the page shows; a state that does not match ours is
//! refused before anything is sent; the code is exchanged for tokens, which are written to the
//! account's credential file (0600, atomically), with a new client key if it had none.
//!
//! The flow is two calls so that any front end can drive it: [`PendingLogin::start`] gives the
//! URL to show, [`PendingLogin::finish`] takes what the user pasted. [`save`] writes the file.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use super::endpoint::{self, EndpointError, Granted};
use crate::accounts::credentials::{self, FILE_SUFFIX, UpdateError};
use crate::config::OAuthConfig;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    #[error("expected the code as shown after logging in, in the form code#state")]
    Malformed,
    #[error(
        "the pasted state does not match this login (a code from another login, or tampered with); start again"
    )]
    StateMismatch,
    #[error("the code was refused: {0}")]
    Exchange(#[from] EndpointError),
    #[error("cannot save the credential file: {0}")]
    Save(#[from] UpdateError),
    #[error(
        "invalid domain {0:?}: use a host name such as me.example (letters, digits, '.', '-', '_')"
    )]
    Domain(String),
}

/// A login waiting for the code the user will paste.
pub struct PendingLogin {
    verifier: SecretString,
    state: String,
    url: Url,
}

fn random_b64(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// `base64url(SHA-256(verifier))`, without padding.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl PendingLogin {
    /// A fresh verifier and state, and the authorize URL that carries them.
    pub fn start(config: &OAuthConfig) -> Result<PendingLogin, LoginError> {
        let verifier = random_b64(32)?;
        let state = random_b64(32)?;
        let mut url = config.authorize_url.clone();
        url.query_pairs_mut()
            .append_pair("code", "true")
            .append_pair("client_id", &config.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &config.redirect_uri)
            .append_pair("scope", &config.scopes)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);
        Ok(PendingLogin {
            verifier: SecretString::from(verifier),
            state,
            url,
        })
    }

    /// The URL the user opens to log in.
    pub fn authorize_url(&self) -> &Url {
        &self.url
    }

    /// Checks the pasted `code#state` and exchanges the code for tokens.
    pub async fn finish(
        self,
        http: &reqwest::Client,
        config: &OAuthConfig,
        pasted: &str,
    ) -> Result<Granted, LoginError> {
        let (code, state) = pasted
            .trim()
            .split_once('#')
            .filter(|(code, state)| !code.is_empty() && !state.is_empty())
            .ok_or(LoginError::Malformed)?;
        let matches: bool = state.as_bytes().ct_eq(self.state.as_bytes()).into();
        if !matches {
            return Err(LoginError::StateMismatch);
        }
        let code = SecretString::from(code);
        Ok(endpoint::exchange_code(http, config, &code, &self.state, &self.verifier).await?)
    }
}

/// The credential file of `domain` in `dir`; refuses names that are not plain host names.
pub fn credential_file(dir: &Path, domain: &str) -> Result<PathBuf, LoginError> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !valid {
        return Err(LoginError::Domain(domain.to_string()));
    }
    Ok(dir.join(format!("{}{FILE_SUFFIX}", domain.to_ascii_lowercase())))
}

/// Writes the login to `<dir>/<domain>.credentials.json` (creating `dir`, mode 0700, if
/// needed). Returns the new client key when the account had none: show it once.
pub fn save(
    dir: &Path,
    domain: &str,
    granted: &Granted,
) -> Result<Option<SecretString>, LoginError> {
    let file = credential_file(dir, domain)?;
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|source| UpdateError::Io {
            file: dir.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let account_id = granted
        .account_uuid
        .clone()
        .unwrap_or_else(|| domain.to_ascii_lowercase());
    Ok(credentials::save_login(
        &file,
        &granted.tokens,
        &account_id,
    )?)
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// The verifier never leaves this module except to the token endpoint.
#[cfg(test)]
impl PendingLogin {
    fn verifier(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.verifier)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config() -> OAuthConfig {
        let map: HashMap<String, String> =
            [("NEXUS_DATA_DIR".to_string(), "/tmp/x".to_string())].into();
        crate::Config::from_map(&map).unwrap().oauth
    }

    #[test]
    fn the_authorize_url_carries_s256_pkce_and_a_separate_state() {
        let login = PendingLogin::start(&config()).unwrap();
        let url = login.authorize_url();
        assert_eq!(
            url.as_str().split('?').next(),
            Some("https://claude.ai/oauth/authorize")
        );
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["code"], "true");
        assert_eq!(q["client_id"], crate::config::DEFAULT_OAUTH_CLIENT_ID);
        assert_eq!(q["response_type"], "code");
        assert_eq!(
            q["redirect_uri"],
            "https://platform.claude.com/oauth/code/callback"
        );
        assert_eq!(q["scope"], "org:create_api_key user:profile user:inference");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], challenge(login.verifier()));
        assert_eq!(login.verifier().len(), 43, "32 random bytes");
        assert_eq!(q["state"].len(), 43);
        assert_ne!(
            q["state"],
            login.verifier(),
            "the state is not the verifier"
        );
        let other = PendingLogin::start(&config()).unwrap();
        assert_ne!(other.verifier(), login.verifier());
    }

    #[test]
    fn challenge_is_base64url_sha256() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[tokio::test]
    async fn a_state_mismatch_or_a_bare_code_is_refused_before_any_call() {
        let config = config();
        let http = crate::http_client::client().unwrap();
        let login = PendingLogin::start(&config).unwrap();
        let err = login.finish(&http, &config, "code#not-our-state").await;
        assert!(matches!(err, Err(LoginError::StateMismatch)), "{err:?}");
        let login = PendingLogin::start(&config).unwrap();
        let err = login.finish(&http, &config, "just-a-code").await;
        assert!(matches!(err, Err(LoginError::Malformed)), "{err:?}");
    }

    #[test]
    fn domains_must_be_plain_host_names() {
        let dir = Path::new("/tmp/c");
        assert!(
            credential_file(dir, "Me.Example")
                .unwrap()
                .ends_with("me.example.credentials.json")
        );
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(credential_file(dir, bad).is_err(), "{bad}");
        }
    }
}
