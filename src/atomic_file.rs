//! Private files: atomic replacement of small ones (credential files, keys), the data
//! directory kept to its owner, and the process's file-creation mask.
//!
//! Everything the server writes (the database and its WAL, the spool, keys, logs) is its
//! owner's only: directories 0700, files 0600. The binaries set the umask to 0077 at start
//! ([`owner_only_umask`]); the library does not rely on it and gives each file it creates its
//! mode itself, and [`make_private`] fixes what an older version left open.
//!
//! A reader, or the credentials watcher, sees either the whole old file or the whole new one,
//! never a half-written one: the new contents go to a temporary file in the same directory,
//! created with mode 0600, are flushed to disk, and the temporary file is renamed over the
//! target. The temporary name starts with a dot and ends in `.tmp`, so nothing that lists
//! `*.credentials.json` ever picks it up.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Sets the process's umask to 0077: files and directories made from here on, by this
/// process or a library in it, are its owner's only. Call it first thing in `main`.
pub fn owner_only_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The permission bits of `path` (`None` when it cannot be read, or off Unix).
pub fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Creates `dir` and any missing parents, mode 0700 (parents made here too).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Takes group and other permissions off `path` (a file or a directory) when it has any,
/// with a warning. Returns whether it changed the mode; a missing `path` is left alone.
pub fn make_private(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_symlink() => meta.permissions().mode() & 0o7777,
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
            tracing::warn!(
                "{} was open to group or others (mode {:o}); made it {:o}",
                path.display(),
                mode & 0o777,
                mode & 0o700
            );
            return Ok(true);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(false)
}

/// The data directory, kept to its owner: created 0700 when missing; when it exists, it and
/// the files directly in it lose group and other permissions (with a warning each).
/// Folders in it are left as they are: a credentials folder open to others is refused, not
/// quietly repaired (see `accounts::credentials`).
pub fn private_data_dir(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)?;
    make_private(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            make_private(&entry.path())?;
        }
    }
    Ok(())
}

/// Writes `contents` to `path` atomically, mode 0600, and makes the rename durable.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path)?;
    let result = write_then_rename(&tmp, path, contents);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(io::Error::other)?;
    Ok(path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(random)
    )))
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)?;
    // The rename itself is durable once the directory is synced.
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_private_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.example.credentials.json");
        fs::write(&path, "old").unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn the_data_dir_and_what_is_in_it_become_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a").join("data");
        private_data_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);

        let old = root.path().join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        let db = old.join("claude-nexus.db");
        fs::write(&db, "x").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        let credentials = old.join("credentials");
        fs::create_dir(&credentials).unwrap();
        fs::set_permissions(&credentials, fs::Permissions::from_mode(0o775)).unwrap();
        private_data_dir(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(
            mode(&credentials),
            0o775,
            "folders are left to their owners"
        );
        assert!(!make_private(&db).unwrap(), "already private");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("x.json");
        assert!(write_private(&missing, b"x").is_err());
    }
}
