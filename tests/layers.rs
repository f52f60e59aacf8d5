//! The layer table of ARCHITECTURE.md, checked against `src/`: every top-level module of the
//! library is in the table; no module imports from a layer above its own; and siblings (the
//! top-level modules of one layer, the files of one folder) never import each other in a
//! cycle. Imports are `crate::…` and `super::…` paths, read from the source text; a file's
//! `#[cfg(test)]` module at its end is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Imports allowed against the rules, each with its reason: (from module, to module, why).
/// Keep this empty; an entry is a debt to pay, not a design.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// The library's modules: path (`proxy::auth`) → the `crate::`/`super::` paths its file uses.
fn modules(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != src.join("bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module == ["lib"] || module == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            found.insert(module.clone(), references(&module, &text));
        }
    }
    found
}

/// The absolute module paths (`["accounts", "oauth", "Tokens"]`) that `text` refers to.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut paths = BTreeSet::new();
    {
        for (start, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            // `super::super::x` is read from its first `super`.
            if start >= 7 && code[..start].ends_with("super::") {
                continue;
            }
            let rest = &code[start..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let mut parts: Vec<&str> = rest[..end].split("::").filter(|p| !p.is_empty()).collect();
            let mut base: Vec<String> = Vec::new();
            if parts.first() == Some(&"crate") {
                parts.remove(0);
            } else {
                base = module.to_vec();
                while parts.first() == Some(&"super") {
                    parts.remove(0);
                    base.pop();
                }
            }
            base.extend(parts.iter().map(|p| p.to_string()));
            // `use crate::{a, b::c}` and `use super::{x, y}`: one path per item.
            if rest[end..].starts_with('{') {
                let group = &rest[end + 1..];
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let first = item.trim().split("::").next().unwrap_or_default();
                    if !first.is_empty() && first != "self" {
                        let mut path = base.clone();
                        path.push(first.to_string());
                        paths.insert(path);
                    }
                }
            }
            if !base.is_empty() {
                paths.insert(base);
            }
        }
    }
    paths
}

/// The layer table: top-level module → layer number (0 at the bottom).
fn layer_table(architecture: &str) -> BTreeMap<String, usize> {
    let section = architecture
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut table = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let layer: usize = cells[1]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a layer row starts with its number: {row}"));
        for name in cells[2].split('`').skip(1).step_by(2) {
            assert!(
                table.insert(name.to_string(), layer).is_none(),
                "`{name}` is in the layer table twice"
            );
        }
    }
    table
}

/// The longest prefix of `path` that is a module of `known`.
fn module_of(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// The violations of the layer rules in the tree at `root`.
fn violations(root: &Path) -> Vec<String> {
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let layers = layer_table(&architecture);
    let modules = modules(&root.join("src"));
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let mut problems = Vec::new();
    for top in known.iter().filter(|m| m.len() == 1) {
        if !layers.contains_key(&top[0]) {
            problems.push(format!(
                "`{}` is not in ARCHITECTURE.md's layer table",
                top[0]
            ));
        }
    }
    let excepted = |from: &[String], to: &[String]| {
        EXCEPTIONS
            .iter()
            .any(|(f, t, _)| *f == from.join("::") && *t == to.join("::"))
    };
    // Sibling edges, per parent ("" for the top level).
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, paths) in &modules {
        for path in paths {
            let Some(to) = module_of(path, &known) else {
                continue;
            };
            if excepted(from, &to) {
                continue;
            }
            let (Some(from_layer), Some(to_layer)) = (layers.get(&from[0]), layers.get(&to[0]))
            else {
                continue;
            };
            if to_layer > from_layer {
                problems.push(format!(
                    "`{}` (layer {from_layer}) imports `{}` (layer {to_layer}), a layer above",
                    from.join("::"),
                    path.join("::")
                ));
                continue;
            }
            // The first level where the two paths part: those two modules are siblings.
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // a module and its own ancestor or descendant
            }
            if common == 0 && from_layer != to_layer {
                continue; // down a layer: never part of a cycle
            }
            siblings
                .entry(from[..common].join("::"))
                .or_default()
                .entry(from[common].clone())
                .or_default()
                .insert(to[common].clone());
        }
    }
    for (parent, edges) in &siblings {
        if let Some(cycle) = find_cycle(edges) {
            let scope = if parent.is_empty() {
                "top-level modules".to_string()
            } else {
                format!("modules of `{parent}`")
            };
            problems.push(format!(
                "import cycle among the {scope}: {}",
                cycle.join(" → ")
            ));
        }
    }
    problems
}

#[test]
fn imports_follow_the_layer_table() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let problems = violations(&root);
    assert!(
        problems.is_empty(),
        "the layer rules of ARCHITECTURE.md are broken:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_exception_is_still_needed_and_says_why() {
    for (from, to, why) in EXCEPTIONS {
        assert!(!why.trim().is_empty(), "{from} → {to} needs a reason");
    }
}

/// The check itself: an upward import and a sibling cycle, in a copy of the tree, are caught.
#[test]
fn an_upward_import_and_a_cycle_are_caught() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&root.join("src"), &copy.path().join("src"));
    std::fs::copy(
        root.join("ARCHITECTURE.md"),
        copy.path().join("ARCHITECTURE.md"),
    )
    .unwrap();
    assert!(violations(copy.path()).is_empty());

    let usage = copy.path().join("src/usage.rs");
    let text = std::fs::read_to_string(&usage).unwrap();
    std::fs::write(&usage, format!("use crate::server::Server;\n{text}")).unwrap();
    let problems = violations(copy.path());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`usage` (layer 0) imports `server::Server`")),
        "{problems:?}"
    );

    std::fs::write(&usage, &text).unwrap();
    let keys = copy.path().join("src/keys.rs");
    let keys_text = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, format!("use crate::usage::Usage;\n{keys_text}")).unwrap();
    std::fs::write(&usage, format!("use crate::keys::KeyHash;\n{text}")).unwrap();
    let problems = violations(copy.path());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("import cycle among the top-level modules")),
        "{problems:?}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
