//! Connect Claude Code: its user settings (`~/.claude/settings.json`) get the proxy's address
//! and a client key in their `env` block, every other field kept; Disconnect puts back what
//! was there before, exactly. Plain functions over the file's text; the app does the I/O
//! (atomic writes, the backup file) around them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const BASE_URL: &str = "ANTHROPIC_BASE_URL";
const AUTH_TOKEN: &str = "ANTHROPIC_AUTH_TOKEN";
const API_KEY: &str = "ANTHROPIC_API_KEY";
const CUSTOM_HEADERS: &str = "ANTHROPIC_CUSTOM_HEADERS";
const NEXUS_HEADER: &str = "x-nexus-key";

/// How Claude Code reaches the proxy.
pub struct Connection {
    /// `http://127.0.0.1:PORT`, the port actually bound.
    pub base_url: String,
    pub key: SecretString,
    /// A passthrough account: Claude Code keeps its own login (sent upstream untouched) and
    /// the client key travels in `x-nexus-key`.
    pub passthrough: bool,
}

impl Connection {
    /// The variables this connection sets (`None`: removed).
    fn variables(&self, env: &Map<String, Value>) -> Vec<(&'static str, Option<String>)> {
        let key = self.key.expose_secret();
        if self.passthrough {
            // Other custom headers the user sends stay; an older x-nexus-key line goes.
            let mut headers: Vec<&str> = env
                .get(CUSTOM_HEADERS)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .lines()
                .filter(|line| !is_nexus_header(line) && !line.trim().is_empty())
                .collect();
            let ours = format!("{NEXUS_HEADER}: {key}");
            headers.push(&ours);
            vec![
                (BASE_URL, Some(self.base_url.clone())),
                (CUSTOM_HEADERS, Some(headers.join("\n"))),
                (AUTH_TOKEN, None),
                (API_KEY, None),
            ]
        } else {
            vec![
                (BASE_URL, Some(self.base_url.clone())),
                (AUTH_TOKEN, Some(key.to_string())),
                (API_KEY, None),
            ]
        }
    }

    /// The two `export` lines for a shell.
    pub fn exports(&self) -> String {
        let key = self.key.expose_secret();
        let second = if self.passthrough {
            format!("export {CUSTOM_HEADERS}=\"{NEXUS_HEADER}: {key}\"")
        } else {
            format!("export {AUTH_TOKEN}={key}")
        };
        format!("export {BASE_URL}={}\n{second}\n", self.base_url)
    }
}

fn is_nexus_header(line: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case(NEXUS_HEADER))
}

/// Claude Code's user settings: `$CLAUDE_CONFIG_DIR/settings.json`, else
/// `~/.claude/settings.json`.
pub fn settings_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => directories::BaseDirs::new()?.home_dir().join(".claude"),
    };
    Some(dir.join("settings.json"))
}

/// Connected: the app holds a backup of what Connect changed.
pub fn is_connected(dirs: &crate::settings::Dirs) -> bool {
    dirs.claude_code_backup().exists()
}

/// What Disconnect needs, kept in the app's config directory (0600: it may hold the user's
/// own earlier key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub settings_path: PathBuf,
    /// Whether the file had an `env` block (removed again when it ends up empty).
    pub had_env: bool,
    /// Each changed variable's value before Connect (`null`: it was not set).
    pub before: BTreeMap<String, Option<Value>>,
    /// What Connect wrote (`null`: removed), to leave alone a value the user changed since.
    pub written: BTreeMap<String, Option<Value>>,
    /// The client key made for this connection, revoked on Disconnect.
    pub key_id: Option<String>,
}

/// One variable before and after, secrets masked, for the confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub name: &'static str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A Connect ready to be written.
pub struct Plan {
    pub changes: Vec<Change>,
    /// The new settings file.
    pub text: String,
    pub backup: Backup,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaudeCodeError {
    #[error(
        "{path} is not valid JSON ({source}); it was left untouched. Fix it, or move it away, then connect again."
    )]
    Malformed {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "{path} is not a JSON object{what}; it was left untouched. Fix it, then connect again."
    )]
    NotAnObject { path: String, what: &'static str },
}

fn parse(path: &Path, text: &str) -> Result<Map<String, Value>, ClaudeCodeError> {
    let not_object = |what| ClaudeCodeError::NotAnObject {
        path: path.display().to_string(),
        what,
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_str(text).map_err(|source| ClaudeCodeError::Malformed {
        path: path.display().to_string(),
        source,
    })?;
    let Value::Object(root) = value else {
        return Err(not_object(""));
    };
    if root.get("env").is_some_and(|env| !env.is_object()) {
        return Err(not_object(" (its \"env\" is not an object)"));
    }
    Ok(root)
}

fn render(root: &Map<String, Value>) -> String {
    let mut text = serde_json::to_string_pretty(root).expect("JSON values serialize");
    text.push('\n');
    text
}

fn env_mut(root: &mut Map<String, Value>) -> &mut Map<String, Value> {
    root.entry("env")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("env was checked to be an object")
}

/// Connect: the new file and the backup, from the file's current text (`None`: no file yet).
pub fn connect(
    path: &Path,
    current: Option<&str>,
    connection: &Connection,
    key_id: Option<String>,
) -> Result<Plan, ClaudeCodeError> {
    let mut root = parse(path, current.unwrap_or_default())?;
    let had_env = root.contains_key("env");
    let env = env_mut(&mut root);
    let mut backup = Backup {
        settings_path: path.to_path_buf(),
        had_env,
        before: BTreeMap::new(),
        written: BTreeMap::new(),
        key_id,
    };
    let mut changes = Vec::new();
    for (name, after) in connection.variables(env) {
        let before = env.get(name).cloned();
        let after = after.map(Value::String);
        if before == after {
            continue;
        }
        changes.push(Change {
            name,
            before: before.as_ref().map(masked),
            after: after.as_ref().map(masked),
        });
        match &after {
            Some(value) => env.insert(name.to_string(), value.clone()),
            None => env.remove(name),
        };
        backup.before.insert(name.to_string(), before);
        backup.written.insert(name.to_string(), after);
    }
    Ok(Plan {
        changes,
        text: render(&root),
        backup,
    })
}

/// Disconnect: the file with the values from before Connect put back. A variable the user
/// changed since is left as it is now and named in the second element.
pub fn disconnect(
    current: &str,
    backup: &Backup,
) -> Result<(String, Vec<String>), ClaudeCodeError> {
    let mut root = parse(&backup.settings_path, current)?;
    let env = env_mut(&mut root);
    let mut kept = Vec::new();
    for (name, before) in &backup.before {
        let written = backup.written.get(name).cloned().flatten();
        if env.get(name) != written.as_ref() {
            kept.push(name.clone());
            continue;
        }
        match before {
            Some(value) => env.insert(name.clone(), value.clone()),
            None => env.remove(name),
        };
    }
    if !backup.had_env && env.is_empty() {
        root.remove("env");
    }
    Ok((render(&root), kept))
}

/// A variable's value as the confirmation shows it: keys cut to their prefix.
fn masked(value: &Value) -> String {
    let text = value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string);
    let mask = |word: &str| {
        if word.starts_with("cnp_") || word.starts_with("sk-ant-") {
            format!("{}…", word.chars().take(12).collect::<String>())
        } else {
            word.to_string()
        }
    };
    text.split(' ').map(mask).collect::<Vec<_>>().join(" ")
}

/// The confirmation's text: one line per variable.
pub fn describe(path: &Path, changes: &[Change]) -> String {
    let mut text = format!("Claude Code's settings ({}), env block:\n", path.display());
    for change in changes {
        let line = match (&change.before, &change.after) {
            (None, Some(after)) => format!("  + {} = {after}", change.name),
            (Some(before), None) => format!("  − {} (was {before})", change.name),
            (Some(before), Some(after)) => format!("  ~ {} = {after} (was {before})", change.name),
            (None, None) => continue,
        };
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str("Every other setting stays. Disconnect puts the previous values back.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "cnp_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP";

    fn connection(passthrough: bool) -> Connection {
        Connection {
            base_url: "http://127.0.0.1:3000".into(),
            key: SecretString::from(KEY),
            passthrough,
        }
    }

    fn path() -> PathBuf {
        PathBuf::from("/home/me/.claude/settings.json")
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    const USER_FILE: &str = r#"{
  "model": "opus",
  "permissions": {"allow": ["Bash(git status)"]},
  "env": {"ANTHROPIC_API_KEY": "sk-ant-api03-mine", "DISABLE_TELEMETRY": "1"},
  "hooks": {}
}"#;

    #[test]
    fn connect_sets_the_proxy_and_key_and_keeps_every_other_field_in_order() {
        let plan = connect(
            &path(),
            Some(USER_FILE),
            &connection(false),
            Some("k1".into()),
        )
        .unwrap();
        let after = json(&plan.text);
        assert_eq!(
            after,
            json!({
                "model": "opus",
                "permissions": {"allow": ["Bash(git status)"]},
                "env": {
                    "DISABLE_TELEMETRY": "1",
                    "ANTHROPIC_BASE_URL": "http://127.0.0.1:3000",
                    "ANTHROPIC_AUTH_TOKEN": KEY,
                },
                "hooks": {}
            })
        );
        let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["model", "permissions", "env", "hooks"], "order kept");
        let names: Vec<&str> = plan.changes.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_AUTH_TOKEN",
                "ANTHROPIC_API_KEY"
            ]
        );
        let shown = describe(&path(), &plan.changes);
        assert!(
            !shown.contains(KEY) && !shown.contains("sk-ant-api03-mine"),
            "{shown}"
        );
        assert!(
            shown.contains("+ ANTHROPIC_AUTH_TOKEN = cnp_live_012…"),
            "{shown}"
        );
    }

    #[test]
    fn disconnect_restores_the_previous_values_exactly() {
        let plan = connect(&path(), Some(USER_FILE), &connection(false), None).unwrap();
        let (restored, kept) = disconnect(&plan.text, &plan.backup).unwrap();
        assert!(kept.is_empty());
        assert_eq!(json(&restored), json(USER_FILE));

        // A file without an env block gets none back.
        let plan = connect(
            &path(),
            Some(r#"{"model": "opus"}"#),
            &connection(true),
            None,
        )
        .unwrap();
        let (restored, _) = disconnect(&plan.text, &plan.backup).unwrap();
        assert_eq!(json(&restored), json!({"model": "opus"}));

        // No file at all: Connect creates one with just the env block.
        let plan = connect(&path(), None, &connection(false), None).unwrap();
        assert_eq!(
            json(&plan.text)["env"]["ANTHROPIC_BASE_URL"],
            "http://127.0.0.1:3000"
        );
        let (restored, _) = disconnect(&plan.text, &plan.backup).unwrap();
        assert_eq!(json(&restored), json!({}));
    }

    #[test]
    fn passthrough_keeps_claude_codes_own_login_and_other_headers() {
        let file = r#"{"env": {"ANTHROPIC_CUSTOM_HEADERS": "x-team: blue\nx-nexus-key: cnp_live_old", "ANTHROPIC_AUTH_TOKEN": "mine"}}"#;
        let plan = connect(&path(), Some(file), &connection(true), None).unwrap();
        let env = &json(&plan.text)["env"];
        assert_eq!(
            env["ANTHROPIC_CUSTOM_HEADERS"],
            format!("x-team: blue\nx-nexus-key: {KEY}")
        );
        assert!(
            env.get("ANTHROPIC_AUTH_TOKEN").is_none(),
            "Claude Code's own login is used"
        );
        assert!(env.get("ANTHROPIC_API_KEY").is_none());
        let (restored, _) = disconnect(&plan.text, &plan.backup).unwrap();
        assert_eq!(json(&restored), json(file));
        assert_eq!(
            connection(true).exports(),
            format!(
                "export ANTHROPIC_BASE_URL=http://127.0.0.1:3000\nexport ANTHROPIC_CUSTOM_HEADERS=\"x-nexus-key: {KEY}\"\n"
            )
        );
    }

    #[test]
    fn a_value_the_user_changed_after_connecting_is_left_alone() {
        let plan = connect(&path(), Some(USER_FILE), &connection(false), None).unwrap();
        let mut edited = json(&plan.text);
        edited["env"]["ANTHROPIC_BASE_URL"] = json!("http://gateway.internal");
        edited["theme"] = json!("dark");
        let (restored, kept) = disconnect(&edited.to_string(), &plan.backup).unwrap();
        assert_eq!(kept, ["ANTHROPIC_BASE_URL"]);
        let restored = json(&restored);
        assert_eq!(
            restored["env"]["ANTHROPIC_BASE_URL"],
            "http://gateway.internal"
        );
        assert_eq!(restored["env"]["ANTHROPIC_API_KEY"], "sk-ant-api03-mine");
        assert!(restored["env"].get("ANTHROPIC_AUTH_TOKEN").is_none());
        assert_eq!(restored["theme"], "dark");
    }

    #[test]
    fn a_malformed_file_is_refused_with_a_clear_message() {
        for (text, says) in [
            ("{\"env\": {", "is not valid JSON"),
            ("[1, 2]", "is not a JSON object"),
            ("{\"env\": \"x\"}", "its \"env\" is not an object"),
        ] {
            let Err(e) = connect(&path(), Some(text), &connection(false), None) else {
                panic!("{text} accepted");
            };
            let e = e.to_string();
            assert!(e.contains(says) && e.contains("left untouched"), "{e}");
        }
    }
}
