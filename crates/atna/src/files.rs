//! Files and directories holding secrets' hashes: the data directory (this user's only) and export files (written
//! whole or not at all, never over another user's file in place).

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context};

/// Creates the data directory (and missing parents) readable by this user only, or warns when an existing one is
/// open to other local users: it holds the SQLite database, with every password and key hash.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        return builder.create(dir).with_context(|| format!("creating data directory {}", dir.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading data directory {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                directory = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is open to other local users, and the database in it holds password and key \
                 hashes; make it private: chmod 700 {}",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` readable by this user only (0600), refusing to replace an existing file unless `force`.
/// The bytes go to a new temporary file next to `path` first, which is synced and then renamed over `path`: a reader
/// sees the old file or the whole new one, and a replaced file is a new file owned by this user, whoever owned the
/// old one and whatever its mode. If anything fails, the temporary file is removed.
pub fn write_private(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    // tempfile creates it with mode 0600 and a random name that cannot collide with an existing file.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    let persisted = if force { tmp.persist(path) } else { tmp.persist_noclobber(path) };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow!("{} already exists; pass --force to overwrite it", path.display()),
        _ => anyhow!(e.error).context(format!("cannot create {}", path.display())),
    })?;
    // The rename is durable once the directory entry is (best effort: not every platform can sync a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
