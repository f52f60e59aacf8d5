//! The per-model price table behind "estimated cost": a data file embedded in the binary
//! (`prices.json` beside this module), which `prices.json` in the data directory can override
//! or extend entry by entry. Cache writes are priced at 1.25× input (the 5-minute TTL; the
//! records do not say which TTL was used), cache reads at 0.1× input. Subscription traffic is
//! priced the same way: its API-equivalent value.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::usage::Usage;

const DEFAULT: &str = include_str!("prices.json");
const CACHE_WRITE: f64 = 1.25;
const CACHE_READ: f64 = 0.1;

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Price {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
}

#[derive(Deserialize)]
struct PriceFile {
    models: BTreeMap<String, Price>,
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
}

impl PriceTable {
    /// The embedded table, with `override_file`'s entries on top when it exists. A broken
    /// override file is reported and ignored.
    pub fn load(override_file: &Path) -> PriceTable {
        let mut models = serde_json::from_str::<PriceFile>(DEFAULT)
            .expect("the embedded price table parses")
            .models;
        match std::fs::read_to_string(override_file) {
            Ok(text) => match serde_json::from_str::<PriceFile>(&text) {
                Ok(file) => models.extend(file.models),
                Err(e) => tracing::warn!(
                    "{}: not a price table ({e}); using the built-in prices",
                    override_file.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("{}: {e}", override_file.display()),
        }
        PriceTable { models }
    }

    /// The price of the longest model-name prefix in the table.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| *price)
    }

    /// Estimated USD cost of `usage` on `model`; `None` for unknown models.
    pub fn cost(&self, model: Option<&str>, usage: &Usage) -> Option<f64> {
        let p = self.price(model?)?;
        let per_token = |n: u64, usd_per_mtok: f64| n as f64 * usd_per_mtok / 1_000_000.0;
        Some(
            per_token(usage.input_tokens, p.input)
                + per_token(usage.output_tokens, p.output)
                + per_token(usage.cache_creation_input_tokens, p.input * CACHE_WRITE)
                + per_token(usage.cache_read_input_tokens, p.input * CACHE_READ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_and_cache_multipliers() {
        let table = PriceTable::load(Path::new("/nonexistent/prices.json"));
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 1_000_000,
        };
        let cost = table
            .cost(Some("claude-sonnet-4-5-20250929"), &usage)
            .unwrap();
        assert!((cost - (3.0 + 15.0 + 3.75 + 0.3)).abs() < 1e-9, "{cost}");
        let opus = table.price("claude-opus-4-5-20251101").unwrap();
        assert!((opus.input - 5.0).abs() < 1e-9);
        assert!(table.cost(Some("gpt-4"), &usage).is_none());
        assert!(table.cost(None, &usage).is_none());
    }

    #[test]
    fn the_override_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prices.json");
        std::fs::write(
            &file,
            r#"{"models":{"claude-sonnet-4-5":{"input":1,"output":2},"my-model":{"input":10,"output":10}}}"#,
        )
        .unwrap();
        let table = PriceTable::load(&file);
        assert!((table.price("claude-sonnet-4-5").unwrap().input - 1.0).abs() < 1e-9);
        assert!(table.price("my-model-x").is_some());
        assert!(table.price("claude-haiku-4-5").is_some());
    }
}
