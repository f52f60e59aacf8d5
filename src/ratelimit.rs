//! The `anthropic-ratelimit-unified-*` response headers: a subscription's 5-hour and 7-day
//! windows as each response reports them. Parsed once per response; the proxy keeps the latest
//! per account (`oauth::usage_window`) and the record of the request keeps its own.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One window: how much is used (as the source gives it) and when it resets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub utilization: Option<f64>,
    /// RFC 3339.
    pub resets_at: Option<String>,
}

/// The `anthropic-ratelimit-unified-*` headers of one response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnifiedHeaders {
    /// `-status`: `allowed`, `allowed_warning`, `rejected`.
    pub status: Option<String>,
    /// `-5h-utilization` (a fraction) and `-5h-reset` (Unix seconds, shown as RFC 3339).
    pub five_hour: Window,
    /// `-7d-utilization` and `-7d-reset`.
    pub seven_day: Window,
}

const PREFIX: &str = "anthropic-ratelimit-unified-";

impl UnifiedHeaders {
    /// The unified headers of a response; `None` when it has none.
    pub fn from_headers(headers: &HeaderMap) -> Option<UnifiedHeaders> {
        // Only subscription (OAuth) answers carry them: spare every other response the lookups.
        if !headers.keys().any(|name| name.as_str().starts_with(PREFIX)) {
            return None;
        }
        let get = |suffix: &str| {
            headers
                .get(format!("{PREFIX}{suffix}"))
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let window = |name: &str| Window {
            utilization: get(&format!("{name}-utilization")).and_then(|v| v.parse().ok()),
            resets_at: get(&format!("{name}-reset")).map(reset_time),
        };
        let found = UnifiedHeaders {
            status: get("status").map(|s| s.chars().take(64).collect()),
            five_hour: window("5h"),
            seven_day: window("7d"),
        };
        (found != UnifiedHeaders::default()).then_some(found)
    }
}

/// A reset given in Unix seconds becomes RFC 3339; anything else is kept as sent.
fn reset_time(value: &str) -> String {
    value
        .parse::<i64>()
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| value.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn unified_headers_are_parsed() {
        let mut h = HeaderMap::new();
        assert_eq!(UnifiedHeaders::from_headers(&h), None);
        for (name, value) in [
            ("anthropic-ratelimit-unified-status", "allowed_warning"),
            ("anthropic-ratelimit-unified-5h-utilization", "0.42"),
            ("anthropic-ratelimit-unified-5h-reset", "1764331200"),
            ("anthropic-ratelimit-unified-7d-utilization", "0.9"),
            ("anthropic-ratelimit-unified-7d-reset", "1764763200"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        let u = UnifiedHeaders::from_headers(&h).unwrap();
        assert_eq!(u.status.as_deref(), Some("allowed_warning"));
        assert_eq!(u.five_hour.utilization, Some(0.42));
        assert_eq!(
            u.five_hour.resets_at.as_deref(),
            Some("2025-11-28T12:00:00Z")
        );
        assert_eq!(u.seven_day.utilization, Some(0.9));
        assert_eq!(
            u.seven_day.resets_at.as_deref(),
            Some("2025-12-03T12:00:00Z")
        );
    }
}
