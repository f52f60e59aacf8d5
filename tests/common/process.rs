//! The real `claude-nexus` binary as a child process, its log lines collected.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_claude-nexus");

/// A running `claude-nexus serve` whose stderr lines are collected.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(mut cmd: Command) -> (Running, String) {
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
        let line = running.wait_for("listening on http://");
        let addr = line
            .split("listening on http://")
            .nth(1)
            .unwrap()
            .split([',', '"'])
            .next()
            .unwrap()
            .to_string();
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
