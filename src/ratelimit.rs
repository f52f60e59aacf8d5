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
            // `NaN` and `inf` parse as floats, but are no fraction (and JSON has no such number).
            utilization: get(&format!("{name}-utilization"))
                .and_then(|v| v.parse().ok())
                .filter(|u: &f64| u.is_finite()),
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

    use proptest::prelude::*;

    const NAMES: [&str; 5] = [
        "anthropic-ratelimit-unified-status",
        "anthropic-ratelimit-unified-5h-utilization",
        "anthropic-ratelimit-unified-5h-reset",
        "anthropic-ratelimit-unified-7d-utilization",
        "anthropic-ratelimit-unified-7d-reset",
    ];

    /// Any value a header can carry: visible ASCII, white space, bytes past ASCII, numbers
    /// too large for any type, negative numbers, and words that parse as special floats.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[ -~]{0,80}".prop_map(String::into_bytes),
            Just(Vec::new()),
            "-?[0-9]{1,400}(\\.[0-9]{0,20})?".prop_map(String::into_bytes),
            prop::sample::select(vec![
                "NaN",
                "nan",
                "-NaN",
                "inf",
                "-inf",
                "+inf",
                "Infinity",
                "-Infinity",
                "1e309",
                "-1e309",
                "1e-400",
                "-0",
                "0x10",
                "1_000",
                "+5",
                " 0.5 ",
                "\t7\t",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "253402300799",
                "253402300800",
                "-377705116800",
                "-377705116801",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..40),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever the headers say, the parser answers (never panics), and what it keeps is
        /// fit to show and to store: a finite fraction, short texts, and JSON that reads back.
        #[test]
        fn any_header_values_parse_or_are_ignored(
            values in prop::collection::vec(prop::option::of(header_value()), 5),
            repeated in prop::option::of((0..5usize, header_value())),
            other in prop::option::of(("anthropic-ratelimit-unified-[a-z0-9-]{0,12}", header_value())),
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in NAMES.iter().zip(&values) {
                if let Some(value) = value {
                    h.append(*name, HeaderValue::from_bytes(value).unwrap());
                }
            }
            if let Some((i, value)) = &repeated {
                h.append(NAMES[*i], HeaderValue::from_bytes(value).unwrap());
            }
            if let Some((name, value)) = &other {
                h.append(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let sent_status = values[0]
                .as_deref()
                .filter(|v| v.is_ascii())
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty());
            let Some(u) = UnifiedHeaders::from_headers(&h) else {
                prop_assert_eq!(sent_status, None);
                return Ok(());
            };
            if let Some(sent) = sent_status {
                prop_assert_eq!(u.status.as_deref(), Some(&sent[..sent.len().min(64)]));
            }
            prop_assert_ne!(&u, &UnifiedHeaders::default());
            prop_assert!(u.status.as_ref().is_none_or(|s| s.chars().count() <= 64));
            for w in [&u.five_hour, &u.seven_day] {
                prop_assert!(w.utilization.is_none_or(f64::is_finite), "{:?}", w.utilization);
                prop_assert!(w.resets_at.as_ref().is_none_or(|s| s.chars().count() <= 64));
            }
            let back: UnifiedHeaders =
                serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
            prop_assert_eq!(back.status, u.status);
            prop_assert_eq!(back.five_hour.resets_at, u.five_hour.resets_at);
            prop_assert_eq!(back.seven_day.resets_at, u.seven_day.resets_at);
            prop_assert_eq!(back.five_hour.utilization.is_some(), u.five_hour.utilization.is_some());
            prop_assert_eq!(back.seven_day.utilization.is_some(), u.seven_day.utilization.is_some());
        }
    }
}
