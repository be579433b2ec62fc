//! Scanning files: a parallel walk (the `ignore` crate: `.gitignore`, `.ignore` and git's exclude files are
//! respected, as `git` would; hidden files such as `.env` are scanned), reading only regular files up to the size cap.
//!
//! A hostile tree cannot hang or flood the scan: FIFOs, sockets and devices are skipped (checked again on the open
//! file, with a non-blocking open, so a file swapped for a FIFO after the walk looked at it cannot block a reader),
//! symbolic links are not followed, and no file is read past the cap.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ignore::{WalkBuilder, WalkState};

use crate::{findings_in, Options, Report, ScanError, Skipped};

/// Scans `paths` (files or directories).
pub fn scan(paths: &[PathBuf], opts: &Options) -> Result<Report, ScanError> {
    let Some((first, rest)) = paths.split_first() else { return Ok(Report::default()) };
    for p in paths {
        // A path that does not exist is a mistake on the command line, not something to skip quietly.
        if let Err(e) = std::fs::symlink_metadata(p) {
            return Err(ScanError::Path { path: p.clone(), message: e.to_string() });
        }
    }
    let mut walk = WalkBuilder::new(first);
    for p in rest {
        walk.add(p);
    }
    walk.hidden(false)
        .follow_links(false)
        .threads(opts.threads())
        // git's own directory holds objects, not files anyone wrote; `--git` reads history properly.
        .filter_entry(|e| !(e.file_name() == ".git" && e.file_type().is_some_and(|t| t.is_dir())));
    let total = Mutex::new(Report::default());
    walk.build_parallel().run(|| {
        let mut local = Local { report: Report::default(), buf: Vec::new(), opts: opts.clone(), total: &total };
        Box::new(move |entry| {
            match entry {
                Ok(e) => local.entry(&e),
                Err(err) => local.report.errors.push(err.to_string()),
            }
            // Hand over now and then, and at the end (the closure is dropped then).
            if local.report.findings.len() + local.report.errors.len() + local.report.skipped.len() > 64 {
                local.flush();
            }
            WalkState::Continue
        })
    });
    Ok(total.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// A worker's results and its read buffer, reused from file to file.
struct Local<'s> {
    report: Report,
    buf: Vec<u8>,
    opts: Options,
    total: &'s Mutex<Report>,
}

impl Local<'_> {
    fn flush(&mut self) {
        let mine = std::mem::take(&mut self.report);
        self.total.lock().unwrap_or_else(|e| e.into_inner()).merge(mine);
    }

    fn entry(&mut self, e: &ignore::DirEntry) {
        let Some(kind) = e.file_type() else { return };
        if kind.is_dir() || kind.is_symlink() {
            return;
        }
        let path = e.path();
        let shown = path.display().to_string();
        if !kind.is_file() {
            self.skip(shown, "not a regular file (FIFO, socket or device)");
            return;
        }
        match read_capped(path, self.opts.max_size, &mut self.buf) {
            Ok(Outcome::Done) => {
                self.report.files_scanned += 1;
                self.report.bytes_scanned += self.buf.len() as u64;
                self.report.findings.extend(findings_in(&self.buf, &shown));
            }
            Ok(Outcome::NotRegular) => self.skip(shown, "not a regular file (FIFO, socket or device)"),
            Ok(Outcome::TooLarge) => self.skip(shown, "larger than --max-size"),
            Err(err) => self.report.errors.push(format!("{shown}: {err}")),
        }
    }

    fn skip(&mut self, path: String, reason: &str) {
        self.report.skipped.push(Skipped { path, reason: reason.to_owned() });
    }
}

impl Drop for Local<'_> {
    fn drop(&mut self) {
        // The walker drops each worker's closure when it is done: nothing found is lost.
        self.flush();
    }
}

/// What reading one file came to.
enum Outcome {
    Done,
    NotRegular,
    TooLarge,
}

/// Reads a regular file into `buf`, unless it is larger than `max`.
fn read_capped(path: &Path, max: u64, buf: &mut Vec<u8>) -> std::io::Result<Outcome> {
    buf.clear();
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Outcome::NotRegular);
    }
    if meta.len() > max {
        return Ok(Outcome::TooLarge);
    }
    buf.reserve(meta.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(buf)?;
    if buf.len() as u64 > max {
        // It grew while being read.
        buf.clear();
        return Ok(Outcome::TooLarge);
    }
    Ok(Outcome::Done)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO nobody writes to returns at once instead of waiting; O_NOFOLLOW: a file swapped for
    // a symbolic link after the walk is not followed.
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}
