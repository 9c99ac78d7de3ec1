//! Outputs are written under a temporary name beside their final path and renamed when complete,
//! so a failed run leaves nothing behind (the temporary is removed on drop).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

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
        Ok(Self { final_path: path.to_path_buf(), tmp_path, committed: false })
    }

    /// Where to write now.
    pub fn tmp(&self) -> &Path {
        &self.tmp_path
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Moves the finished output into place (replacing an existing one: `--force` was checked).
    pub fn commit(mut self) -> Result<PathBuf> {
        if self.final_path.is_dir() {
            std::fs::remove_dir_all(&self.final_path).map_err(|e| Error::file(&self.final_path, e))?;
        }
        std::fs::rename(&self.tmp_path, &self.final_path).map_err(|e| Error::file(&self.final_path, e))?;
        self.committed = true;
        Ok(self.final_path.clone())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            if self.tmp_path.is_dir() {
                std::fs::remove_dir_all(&self.tmp_path).ok();
            } else {
                std::fs::remove_file(&self.tmp_path).ok();
            }
        }
    }
}
