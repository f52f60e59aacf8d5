//! The real `claude-nexus` binary as a child process: the command with its environment
//! ([`Nexus`]), and a running `serve` whose log lines are collected ([`Running`]).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{MockOAuth, MockUpstream};

pub const BIN: &str = env!("CARGO_BIN_EXE_claude-nexus");

/// The `claude-nexus` command as the tests run it: a clean environment (`PATH` only, so the
/// developer's own configuration never leaks in), the data in one directory
/// (`NEXUS_DATA_DIR`; `CREDENTIALS_DIR` is its `credentials` folder unless
/// [`Nexus::credentials`] says otherwise), the dashboard on a free port
/// (`DASHBOARD_PORT=0`), stdin closed. `serve` goes through [`Running::start`], which adds
/// `--port 0`.
pub struct Nexus {
    cmd: Command,
}

impl Nexus {
    pub fn new(data_dir: impl AsRef<Path>) -> Nexus {
        Nexus::binary(BIN, data_dir)
    }

    /// The same with another build of the binary (a release build, for long runs).
    pub fn binary(bin: impl AsRef<OsStr>, data_dir: impl AsRef<Path>) -> Nexus {
        let data_dir = data_dir.as_ref();
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NEXUS_DATA_DIR", data_dir)
            .env("CREDENTIALS_DIR", data_dir.join("credentials"))
            .env("DASHBOARD_PORT", "0")
            .stdin(Stdio::null());
        Nexus { cmd }
    }

    pub fn credentials(self, dir: impl AsRef<OsStr>) -> Nexus {
        self.env("CREDENTIALS_DIR", dir)
    }

    /// `DATABASE_URL`: a [`super::TestDatabase`]'s URL, or any other.
    pub fn database(self, url: impl AsRef<OsStr>) -> Nexus {
        self.env("DATABASE_URL", url)
    }

    /// Forwards to the mock Anthropic API.
    pub fn upstream(self, mock: &MockUpstream) -> Nexus {
        self.env("CLAUDE_API_BASE_URL", mock.url())
    }

    /// Points the OAuth endpoints at the mock OAuth server.
    pub fn oauth(mut self, oauth: &MockOAuth) -> Nexus {
        self.cmd.envs(oauth.env());
        self
    }

    /// Lets the command reach the OS keychain of the environment (its D-Bus session).
    pub fn keychain(mut self) -> Nexus {
        for var in ["DBUS_SESSION_BUS_ADDRESS", "HOME", "XDG_RUNTIME_DIR"] {
            if let Ok(value) = std::env::var(var) {
                self.cmd.env(var, value);
            }
        }
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Nexus {
        self.cmd.env(name, value);
        self
    }

    pub fn envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Nexus
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Runs `args` to the end, stdin closed.
    pub fn output(self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    pub fn command(self) -> Command {
        self.cmd
    }
}

/// The proxy's address in the start-up line ("listening on http://…"), text or JSON log.
pub fn listening_addr(line: &str) -> String {
    line.split("listening on http://")
        .nth(1)
        .unwrap()
        .split([',', '"'])
        .next()
        .unwrap()
        .to_string()
}

impl From<Nexus> for Command {
    fn from(nexus: Nexus) -> Command {
        nexus.cmd
    }
}

/// A running `claude-nexus serve` whose stderr lines are collected. Dropped (a test that
/// failed), it kills the process, so no server outlives its test.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    pub fn start(cmd: impl Into<Command>) -> (Running, String) {
        let mut cmd: Command = cmd.into();
        let mut child = cmd
            .args(["serve", "--port", "0"])
            // Several servers run at once: each dashboard on a free port too.
            .env("DASHBOARD_PORT", "0")
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            lines,
            seen: Vec::new(),
        };
        let addr = listening_addr(&running.wait_for("listening on http://"));
        (running, addr)
    }

    /// Waits for a line with any of `needles` (looking at lines already seen first).
    pub fn wait_for_any(&mut self, needles: &[&str]) -> String {
        if let Some(line) = self
            .seen
            .iter()
            .find(|line| needles.iter().any(|n| line.contains(n)))
        {
            return line.clone();
        }
        self.next_with(needles)
    }

    /// Waits for a new line with `needle` (lines already seen do not count).
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.next_with(&[needle])
    }

    /// Reads lines until one contains any of `needles`.
    fn next_with(&mut self, needles: &[&str]) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no line with {needles:?}; saw {:#?}", self.seen));
            self.seen.push(line.clone());
            if needles.iter().any(|n| line.contains(n)) {
                return line;
            }
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then every line the process wrote.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status, self.seen.join("\n"))
    }
}
