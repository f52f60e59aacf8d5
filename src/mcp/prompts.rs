//! The prompt library: one YAML file per prompt in `MCP_PROMPTS_DIR` (`name`, `description`,
//! `arguments` [{`name`, `description`, `required`}], `template` with `{{variable}}`
//! placeholders); the prompt's id is the file's base name.
//!
//! Invariants: only `.yaml`/`.yml` files directly in the folder are read, each below
//! [`MAX_FILE_BYTES`]; an id (a file's base name, or a name a client asks for) with `..`, `/`,
//! `\`, a NUL, or anything but letters, digits, `-`, `_` and `.` is refused and logged as an
//! attempt, and so is a symlink that leads out of the folder. The library is replaced whole on
//! each reload ([`Library::reload`]), so a reader never sees half a folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The largest prompt file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// The longest id accepted.
const MAX_ID: usize = 128;

/// One prompt, as loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub id: String,
    /// The file's `name` (the id when it has none): a title for people.
    pub name: String,
    pub description: Option<String>,
    pub arguments: Vec<Argument>,
    pub template: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Argument {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    arguments: Vec<Argument>,
    template: String,
}

/// Why an id is refused; `None` when it is acceptable.
pub fn refused_id(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.len() > MAX_ID {
        return Some("empty or too long");
    }
    if id.contains("..") {
        return Some("contains ..");
    }
    if id.contains(['/', '\\']) {
        return Some("contains a path separator");
    }
    if id.contains('\0') {
        return Some("contains a NUL");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("has characters other than letters, digits, -, _ and .");
    }
    None
}

/// The id of a prompt file name (`review.yaml` → `review`), if it is a YAML file.
pub fn id_of(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".yaml")
        .or_else(|| file_name.strip_suffix(".yml"))
}

/// Reads one prompt file of `dir` (already canonical), checking where it leads and its size.
fn read_prompt(dir: &Path, path: &Path, id: &str) -> Result<Prompt, String> {
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot resolve: {e}"))?;
    if real.parent() != Some(dir) {
        return Err("a symlink that leads out of the prompts folder".into());
    }
    let meta = std::fs::metadata(&real).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(&real).map_err(|e| e.to_string())?;
    parse(id, &text)
}

/// A prompt from its file's text.
pub fn parse(id: &str, text: &str) -> Result<Prompt, String> {
    let file: PromptFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    for argument in &file.arguments {
        if refused_id(&argument.name).is_some() {
            return Err(format!(
                "argument name {:?} is not a plain name",
                argument.name
            ));
        }
    }
    Ok(Prompt {
        id: id.to_string(),
        name: file.name.unwrap_or_else(|| id.to_string()),
        description: file.description,
        arguments: file.arguments,
        template: file.template,
    })
}

/// Every prompt in `dir`, by id, and what was refused or could not be read (one line each,
/// naming the file, never its content).
pub fn load_dir(dir: &Path) -> (BTreeMap<String, Arc<Prompt>>, Vec<String>) {
    let mut prompts = BTreeMap::new();
    let mut problems = Vec::new();
    let dir = match dir.canonicalize() {
        Ok(dir) => dir,
        Err(e) => {
            problems.push(format!("prompts folder {}: {e}", dir.display()));
            return (prompts, problems);
        }
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(format!("prompts folder {}: {e}", dir.display()));
            return (prompts, problems);
        }
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            problems.push("a prompt file name that is not UTF-8: refused".into());
            continue;
        };
        let Some(id) = id_of(file_name) else {
            continue;
        };
        if let Some(why) = refused_id(id) {
            problems.push(format!("prompt file {file_name:?} refused: its name {why}"));
            continue;
        }
        match read_prompt(&dir, &entry.path(), id) {
            Ok(prompt) => {
                prompts.insert(id.to_string(), Arc::new(prompt));
            }
            Err(why) => problems.push(format!("prompt file {file_name:?} refused: {why}")),
        }
    }
    (prompts, problems)
}

/// Fills `template`'s `{{name}}` placeholders (spaces inside the braces allowed) with
/// `arguments`; a required argument missing is an error, an optional one missing is empty,
/// and a placeholder no argument declares stays as written.
pub fn render(prompt: &Prompt, arguments: &Map<String, Value>) -> Result<String, String> {
    let mut values = BTreeMap::new();
    for argument in &prompt.arguments {
        let value = match arguments.get(&argument.name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None if argument.required => {
                return Err(format!("argument {:?} is required", argument.name));
            }
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        values.insert(argument.name.as_str(), value);
    }
    let mut out = String::with_capacity(prompt.template.len());
    let mut rest = prompt.template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        match values.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The prompts now, replaced whole on each reload.
pub struct Library {
    dir: PathBuf,
    prompts: ArcSwap<BTreeMap<String, Arc<Prompt>>>,
}

impl Library {
    /// The library of `dir` (created, private, when missing), loaded once.
    pub fn open(dir: PathBuf) -> Library {
        if !dir.exists()
            && let Err(e) = crate::atomic_file::create_private_dir(&dir)
        {
            tracing::warn!("cannot create the prompts folder {}: {e}", dir.display());
        }
        let library = Library {
            dir,
            prompts: ArcSwap::default(),
        };
        library.reload();
        library
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the folder again; true when the prompts changed.
    pub fn reload(&self) -> bool {
        let (prompts, problems) = load_dir(&self.dir);
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        let changed = **self.prompts.load() != prompts;
        self.prompts.store(Arc::new(prompts));
        changed
    }

    pub fn all(&self) -> Arc<BTreeMap<String, Arc<Prompt>>> {
        self.prompts.load_full()
    }

    /// The prompt `id`; an id that fails validation is logged as an attempt.
    pub fn get(&self, id: &str) -> Option<Arc<Prompt>> {
        if let Some(why) = refused_id(id) {
            tracing::warn!(id = %id.escape_debug(), "prompt id refused: {why}");
            return None;
        }
        self.prompts.load().get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REVIEW: &str = "name: Code review\ndescription: Review a diff\narguments:\n  - name: language\n    required: true\n  - name: focus\ntemplate: |\n  Review this {{language}} code{{ focus }}. Keep {{unknown}}.\n";

    #[test]
    fn ids_with_paths_or_odd_characters_are_refused() {
        for id in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "/abs",
            "x y",
            "é",
        ] {
            assert!(refused_id(id).is_some(), "{id:?}");
        }
        for id in ["review", "code-review_2", "v1.2"] {
            assert_eq!(refused_id(id), None, "{id:?}");
        }
    }

    #[test]
    fn templates_are_filled_and_required_arguments_checked() {
        let prompt = parse("review", REVIEW).unwrap();
        assert_eq!(prompt.name, "Code review");
        let text = render(&prompt, json!({"language": "Rust"}).as_object().unwrap()).unwrap();
        assert_eq!(text, "Review this Rust code. Keep {{unknown}}.\n");
        let text = render(
            &prompt,
            json!({"language": "Go", "focus": " for races"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(text, "Review this Go code for races. Keep {{unknown}}.\n");
        assert!(
            render(&prompt, &Map::new())
                .unwrap_err()
                .contains("language")
        );
    }

    #[test]
    fn the_folder_loads_yaml_files_only_and_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompts");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("review.yaml"), REVIEW).unwrap();
        std::fs::write(dir.join("short.yml"), "template: hi").unwrap();
        std::fs::write(dir.join("notes.txt"), "template: no").unwrap();
        std::fs::write(dir.join("broken.yaml"), "template: [").unwrap();
        std::fs::write(
            dir.join("big.yaml"),
            "x".repeat(MAX_FILE_BYTES as usize + 1),
        )
        .unwrap();
        std::fs::write(root.path().join("secret.yaml"), "template: outside").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.yaml"), dir.join("escape.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(dir.join("short.yml"), dir.join("alias.yaml")).unwrap();
        std::fs::write(dir.join("bad name.yaml"), "template: x").unwrap();
        let (prompts, problems) = load_dir(&dir);
        let ids: Vec<&str> = prompts.keys().map(String::as_str).collect();
        assert_eq!(ids, ["alias", "review", "short"]);
        let problems = problems.join("\n");
        for file in ["broken.yaml", "big.yaml", "escape.yaml", "bad name.yaml"] {
            assert!(problems.contains(file), "{file}: {problems}");
        }
        assert!(!problems.contains("outside"), "no content in the log");
    }
}
