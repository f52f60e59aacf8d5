//! Syncing the prompts folder from a git repository (`MCP_GIT_URL`, `MCP_GIT_BRANCH`,
//! `MCP_GIT_PATH`, every `MCP_SYNC_INTERVAL`), with the `git` command: a shallow clone of the
//! branch kept in `<data dir>/mcp-git`, fetched each time; when the branch's head has not
//! moved, nothing else happens.
//!
//! Invariants: a sync only writes prompt files whose content changed (atomically, 0600) and
//! never deletes: prompts that exist only locally stay. What it copies passes the same checks
//! as what the server reads ([`super::prompts`]): YAML files directly in `MCP_GIT_PATH`, plain
//! files (a symlink in the repository is refused), valid ids, below the size limit.
//! `MCP_GIT_TOKEN` goes to git in the environment (an `http.extraHeader`), never in an argument
//! or a log line; git's own messages are masked before they are logged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Mcp;
use super::prompts::{MAX_FILE_BYTES, id_of, refused_id};
use crate::config::McpGitConfig;

/// What one sync did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// The branch head synced, when the fetch worked.
    pub head: Option<String>,
    /// Prompt files written (new or changed).
    pub written: Vec<String>,
    /// Files of the repository's folder refused, with why.
    pub refused: Vec<String>,
    /// The head had not moved: nothing was read.
    pub unchanged: bool,
}

/// One repository and where its prompts go.
pub struct GitSync {
    config: McpGitConfig,
    clone_dir: PathBuf,
    prompts_dir: PathBuf,
    last_head: Option<String>,
}

impl GitSync {
    pub fn new(config: McpGitConfig, clone_dir: PathBuf, prompts_dir: PathBuf) -> GitSync {
        GitSync {
            config,
            clone_dir,
            prompts_dir,
            last_head: None,
        }
    }

    fn git(&self) -> Command {
        let mut git = Command::new("git");
        git.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .stdin(std::process::Stdio::null());
        if let Some(token) = &self.config.token {
            git.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", basic_auth(token));
        }
        git
    }

    /// Runs `git args…` (in the clone when it exists); its trimmed stdout, or an error whose
    /// text is masked.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut git = self.git();
        if self.clone_dir.join(".git").exists() {
            git.current_dir(&self.clone_dir);
        }
        let out = git
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!(
            "git {} failed ({}): {}",
            args.first().unwrap_or(&""),
            out.status,
            crate::redact::mask(last)
        ))
    }

    /// Fetches the branch and copies what changed. Blocking (run it on a blocking thread).
    pub fn sync(&mut self) -> Result<Synced, String> {
        let branch = self.config.branch.as_str();
        if self.clone_dir.join(".git").exists() {
            self.run(&["fetch", "--quiet", "--depth", "1", "origin", branch])?;
            self.run(&["reset", "--quiet", "--hard", "FETCH_HEAD"])?;
        } else {
            crate::atomic_file::create_private_dir(&self.clone_dir)
                .map_err(|e| format!("{}: {e}", self.clone_dir.display()))?;
            let dir = self.clone_dir.to_string_lossy().into_owned();
            let url = self.config.url.expose_secret().to_string();
            self.run(&[
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--single-branch",
                "--branch",
                branch,
                "--",
                &url,
                &dir,
            ])?;
        }
        let head = self.run(&["rev-parse", "HEAD"])?;
        if self.last_head.as_deref() == Some(&head) {
            return Ok(Synced {
                head: Some(head),
                unchanged: true,
                ..Synced::default()
            });
        }
        let mut synced = copy_changed(&self.clone_dir.join(&self.config.path), &self.prompts_dir)?;
        synced.head = Some(head.clone());
        self.last_head = Some(head);
        Ok(synced)
    }
}

/// `Authorization: Basic` of `x-access-token:<token>`, which GitHub, GitLab and Gitea accept
/// for a read-only token.
fn basic_auth(token: &SecretString) -> String {
    use base64::Engine;
    let pair = format!("x-access-token:{}", token.expose_secret());
    format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Copies the prompt files of `from` whose content differs into `to`.
fn copy_changed(from: &Path, to: &Path) -> Result<Synced, String> {
    let mut synced = Synced::default();
    let entries = std::fs::read_dir(from)
        .map_err(|e| format!("the repository has no prompts folder there: {e}"))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = id_of(&name) else {
            continue;
        };
        let refused = |why: String| format!("{name:?}: {why}");
        if let Some(why) = refused_id(id) {
            synced.refused.push(refused(format!("its name {why}")));
            continue;
        }
        let meta = match entry.path().symlink_metadata() {
            Ok(meta) => meta,
            Err(e) => {
                synced.refused.push(refused(e.to_string()));
                continue;
            }
        };
        if !meta.file_type().is_file() {
            synced
                .refused
                .push(refused("not a plain file (a symlink?)".into()));
            continue;
        }
        if meta.len() > MAX_FILE_BYTES {
            synced
                .refused
                .push(refused(format!("larger than {MAX_FILE_BYTES} bytes")));
            continue;
        }
        let content = std::fs::read(entry.path()).map_err(|e| refused(e.to_string()))?;
        let target = to.join(&name);
        if std::fs::read(&target).is_ok_and(|old| old == content) {
            continue;
        }
        crate::atomic_file::write_private(&target, &content).map_err(|e| refused(e.to_string()))?;
        synced.written.push(name);
    }
    Ok(synced)
}

/// Syncs at start and every `MCP_SYNC_INTERVAL` until `stop`; failures are logged and tried
/// again at the next interval. The folder watcher reloads what a sync writes.
pub fn spawn(mcp: Arc<Mcp>, mut sync: GitSync, stop: CancellationToken) -> JoinHandle<()> {
    let interval = sync.config.interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (back, result) = match tokio::task::spawn_blocking(move || {
                let result = sync.sync();
                (sync, result)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("prompt sync stopped: {e}");
                    return;
                }
            };
            sync = back;
            match result {
                Ok(synced) if synced.unchanged => {
                    tracing::debug!("prompts repository unchanged");
                }
                Ok(synced) => {
                    for refused in &synced.refused {
                        tracing::warn!("prompt from the repository refused: {refused}");
                    }
                    tracing::info!(
                        head = synced.head.as_deref().unwrap_or_default(),
                        written = synced.written.len(),
                        "prompts synced from the repository"
                    );
                    if !synced.written.is_empty() {
                        mcp.reload().await;
                    }
                }
                Err(e) => tracing::warn!("prompt sync failed: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_sync_copies_what_changed_keeps_local_prompts_and_skips_an_unmoved_head() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("repo");
        std::fs::create_dir_all(repo.join("team/prompts")).unwrap();
        git(&repo, &["init", "--quiet", "-b", "main"]);
        std::fs::write(repo.join("team/prompts/review.yaml"), "template: v1").unwrap();
        std::fs::write(repo.join("team/prompts/notes.md"), "not a prompt").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", repo.join("team/prompts/evil.yaml")).unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "--quiet", "-m", "prompts"]);
        let prompts = root.path().join("prompts");
        std::fs::create_dir(&prompts).unwrap();
        std::fs::write(prompts.join("local.yaml"), "template: mine").unwrap();
        let config = McpGitConfig {
            url: SecretString::from(format!("file://{}", repo.display())),
            branch: "main".into(),
            path: "team/prompts".into(),
            interval: Duration::from_secs(300),
            token: None,
        };
        let mut sync = GitSync::new(config, root.path().join("clone"), prompts.clone());

        let first = sync.sync().unwrap();
        assert_eq!(first.written, ["review.yaml"]);
        assert_eq!(first.refused.len(), 1, "{:?}", first.refused);
        assert!(first.refused[0].contains("evil.yaml"));
        assert_eq!(
            std::fs::read_to_string(prompts.join("review.yaml")).unwrap(),
            "template: v1"
        );
        assert!(!prompts.join("evil.yaml").exists());
        assert!(sync.sync().unwrap().unchanged, "the head did not move");

        std::fs::write(repo.join("team/prompts/summary.yaml"), "template: s").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "--quiet", "-m", "more"]);
        let second = sync.sync().unwrap();
        assert_eq!(second.written, ["summary.yaml"], "review.yaml is unchanged");
        assert_eq!(
            std::fs::read_to_string(prompts.join("local.yaml")).unwrap(),
            "template: mine"
        );
    }

    #[test]
    fn git_errors_are_reported_without_the_token() {
        let root = tempfile::tempdir().unwrap();
        let config = McpGitConfig {
            url: SecretString::from(format!("file://{}/missing", root.path().display())),
            branch: "main".into(),
            path: "prompts".into(),
            interval: Duration::from_secs(300),
            token: Some(SecretString::from("sk-ant-api03-notlogged")),
        };
        let mut sync = GitSync::new(config, root.path().join("clone"), root.path().join("p"));
        let error = sync.sync().unwrap_err();
        assert!(error.starts_with("git clone failed"), "{error}");
        assert!(!error.contains("notlogged"), "{error}");
    }

    #[test]
    fn the_token_is_sent_as_basic_auth() {
        let header = basic_auth(&SecretString::from("t0ken"));
        assert_eq!(header, "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dDBrZW4=");
    }
}
