//! File modes: the credentials directory and its credential files must not be readable by
//! others.

use std::path::Path;

use super::{Check, Status};
use crate::accounts::credentials::lets_others_write;
use crate::atomic_file::mode_of;

pub(super) fn credential_files(dir: &Path) -> Vec<Check> {
    let shown = dir.display();
    let dir_check = match mode_of(dir) {
        None => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Warn,
            format!("{shown} does not exist"),
        )
        .fix(format!("mkdir -p {shown} && chmod 700 {shown}")),
        Some(mode) if mode & 0o077 == 0 => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Pass,
            format!("{shown} is {mode:o}"),
        ),
        Some(mode) if lets_others_write(mode) => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Fail,
            format!("{shown} is {mode:o}: others can add accounts to it, so the proxy loads none"),
        )
        .fix(format!("chmod 700 {shown}")),
        Some(mode) => Check::new(
            "credentials-dir",
            "Credentials directory is private (0700)",
            Status::Fail,
            format!("{shown} is {mode:o}: others can list your accounts"),
        )
        .fix(format!("chmod 700 {shown}")),
    };
    let mut open = Vec::new();
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let is_credential = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(crate::accounts::credentials::FILE_SUFFIX));
            if !is_credential {
                continue;
            }
            count += 1;
            if let Some(mode) = mode_of(&path)
                && mode & 0o077 != 0
            {
                open.push(format!("{} ({mode:o})", path.display()));
            }
        }
    }
    open.sort();
    let title = "Credential files are private (0600)";
    let files_check = if open.is_empty() {
        Check::new(
            "credential-files",
            title,
            Status::Pass,
            format!("{count} credential file(s), none readable by others"),
        )
    } else {
        Check::new(
            "credential-files",
            title,
            Status::Fail,
            format!(
                "readable by group or others (and so refused by the proxy): {}",
                open.join(", ")
            ),
        )
        .fix(format!(
            "chmod 600 {shown}/*{}",
            crate::accounts::credentials::FILE_SUFFIX
        ))
    };
    vec![dir_check, files_check]
}
