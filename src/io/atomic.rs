//! Outputs are written under a temporary name beside their final path, flushed to the disk and
//! renamed when complete, so a failed run leaves nothing behind (the temporary is removed on drop,
//! and by [`remove_temporaries`] when the process is interrupted).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Error, Result};

/// The temporaries being written now, for [`remove_temporaries`].
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every output still being written (for an interrupt handler: the process exits next).
pub fn remove_temporaries() {
    for p in pending().drain(..) {
        remove(&p);
    }
}

fn remove(p: &Path) {
    if p.is_dir() {
        std::fs::remove_dir_all(p).ok();
    } else {
        std::fs::remove_file(p).ok();
    }
}

/// Free bytes for an unprivileged writer on the file system that holds `path` (or its folder).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Asks the kernel to start writing the dirty pages of `p` (a file, or each file of a folder) to
/// the disk now, without waiting for them, so that the flush before the rename finds little left
/// to do and the disk works while the frames are made. Linux only (elsewhere it does nothing);
/// errors are ignored: the flush at the end reports them.
pub fn start_writeback(p: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if p.is_dir() {
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    start_writeback(&e.path());
                }
            }
        } else if let Ok(f) = std::fs::File::open(p) {
            // SAFETY: an open descriptor; offset 0 and length 0 mean the whole file.
            unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = p;
}

/// Bytes of a file, or of every file of a folder, on the file system (0 where unreadable).
pub fn tree_bytes(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(p).map(|entries| entries.flatten().map(|e| tree_bytes(&e.path())).sum()).unwrap_or(0)
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Flushes a file, or every file of a folder, and the folder itself, to the disk.
fn sync_tree(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        for e in std::fs::read_dir(p)? {
            sync_tree(&e?.path())?;
        }
    }
    std::fs::File::open(p)?.sync_all()
}

/// A file or directory being written; [`Output::commit`] renames it into place.
pub struct Output {
    final_path: PathBuf,
    tmp_path: PathBuf,
    committed: bool,
}

impl Output {
    /// Checks that `path` can be written (its folder exists, it does not exist unless `force`) and
    /// reserves a temporary name beside it.
    pub fn new(path: &Path, force: bool, flag: &str) -> Result<Self> {
        if path.as_os_str().is_empty() {
            return Err(Error::invalid(flag, "empty path"));
        }
        if path.exists() && !force {
            return Err(Error::file(path, format!("already exists (pass --force to overwrite) [{flag}]")));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::file(
                path,
                format!("cannot write: folder {} does not exist [{flag}]", parent.display()),
            ));
        }
        let name =
            path.file_name().ok_or_else(|| Error::invalid(flag, format!("'{}' names no file", path.display())))?;
        let tmp_path = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        // Probe writability now, so that an unwritable folder fails before any work is done.
        std::fs::write(&tmp_path, b"").map_err(|e| Error::file(path, format!("cannot write: {e} [{flag}]")))?;
        std::fs::remove_file(&tmp_path).ok();
        pending().push(tmp_path.clone());
        Ok(Self { final_path: path.to_path_buf(), tmp_path, committed: false })
    }

    /// Where to write now.
    pub fn tmp(&self) -> &Path {
        &self.tmp_path
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes the finished output to the disk and moves it into place (replacing an existing one:
    /// `--force` was checked).
    pub fn commit(mut self) -> Result<PathBuf> {
        let fail = |e: std::io::Error| Error::file(&self.final_path, format!("cannot write: {e}"));
        sync_tree(&self.tmp_path).map_err(fail)?;
        if self.final_path.is_dir() {
            std::fs::remove_dir_all(&self.final_path).map_err(fail)?;
        }
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(fail)?;
        self.committed = true;
        pending().retain(|p| p != &self.tmp_path);
        Ok(self.final_path.clone())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            pending().retain(|p| p != &self.tmp_path);
            remove(&self.tmp_path);
        }
    }
}
