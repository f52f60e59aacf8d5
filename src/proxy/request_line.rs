//! What the proxy forwards with an account's credential: the methods of the Messages API
//! family and normalised `/v1/…` paths, nothing else.
//!
//! A path is forwarded as the client sent it, so it must already be normal: a `..` segment
//! that the proxy passed on verbatim would be resolved by the upstream, or by any proxy in
//! between, into an endpoint outside `/v1/` (`/v1/models/../../api/oauth/usage`), called with
//! the account's token. Segments are checked after percent-decoding, so `%2e%2e` is `..`.

use axum::http::Method;

use crate::error::ProxyError;

/// What the proxy does with a request's method.
#[derive(Debug, PartialEq, Eq)]
pub enum MethodUse {
    /// Sent upstream with the account's credential.
    Forward,
    /// Answered here, with `Allow` and no credential used (HEAD, OPTIONS).
    AnswerLocally,
}

/// GET, POST and DELETE are the API's; anything else (TRACE, PUT, made-up methods) is refused.
pub fn method_use(method: &Method) -> Result<MethodUse, ProxyError> {
    match *method {
        Method::GET | Method::POST | Method::DELETE => Ok(MethodUse::Forward),
        Method::HEAD | Method::OPTIONS => Ok(MethodUse::AnswerLocally),
        _ => Err(ProxyError::MethodNotAllowed(method.to_string())),
    }
}

/// Refuses a path with a `.` or `..` segment, an empty segment (`//`, a trailing `/`), an
/// encoded `/` or `\` (or a raw `\`), or an encoded control character, all after decoding.
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ProxyError::PathRefused);
    };
    for segment in rest.split('/') {
        if !segment_is_normal(segment.as_bytes()) {
            return Err(ProxyError::PathRefused);
        }
    }
    Ok(())
}

/// Decodes `raw` on the fly (no allocation: this runs on every request) and refuses a
/// separator, a control character, a malformed escape, or a decoded `""`, `.` or `..`.
fn segment_is_normal(raw: &[u8]) -> bool {
    let (mut len, mut dots, mut i) = (0, 0, 0);
    while i < raw.len() {
        let byte = if raw[i] == b'%' {
            let (Some(high), Some(low)) = (
                raw.get(i + 1).and_then(|b| hex_digit(*b)),
                raw.get(i + 2).and_then(|b| hex_digit(*b)),
            ) else {
                return false;
            };
            i += 3;
            (high << 4) | low
        } else {
            i += 1;
            raw[i - 1]
        };
        if byte == b'/' || byte == b'\\' || byte.is_ascii_control() {
            return false;
        }
        len += 1;
        dots += usize::from(byte == b'.');
    }
    len > 0 && !(dots == len && len <= 2)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_api_paths_pass() {
        for path in [
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/messages/batches/msgbatch_01/results",
            "/v1/models/claude-sonnet-4-5-20250929",
            "/v1/files/file_011CNha8iCJcU1wXNR6q4V8w",
            "/v1/files/a%20b",
            "/v1/..a/b..",
            "/v1/.../x",
        ] {
            assert!(check_path(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn dot_segments_encoded_separators_and_empty_segments_are_refused() {
        for path in [
            "/v1/models/../../api/oauth/usage",
            "/v1/./messages",
            "/v1/%2e%2e/admin",
            "/v1/%2E./admin",
            "/v1/.%2e",
            "/v1/models%2f..%2f..%2fapi",
            "/v1/models%5c..",
            "/v1/a\\b",
            "/v1//messages",
            "/v1/messages/",
            "/v1/messages%00",
            "/v1/messages%0d%0a",
            "/v1/bad%zz",
            "/v1/short%2",
            "v1/messages",
        ] {
            assert!(check_path(path).is_err(), "{path}");
        }
    }

    #[test]
    fn only_the_api_methods_are_forwarded() {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            assert_eq!(method_use(&method).ok(), Some(MethodUse::Forward));
        }
        for method in [Method::HEAD, Method::OPTIONS] {
            assert_eq!(method_use(&method).ok(), Some(MethodUse::AnswerLocally));
        }
        for method in ["TRACE", "PUT", "PATCH", "CONNECT", "FOO"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(method_use(&method).is_err(), "{method}");
        }
    }
}
