//! `ward dev`'s temp dir: the generated config, the private Redis' data
//! folder and its log. Removed on exit, however the command ends short of
//! SIGKILL.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::DevError;

/// A fresh folder in the system's temp dir, removed on [`WorkDir::remove`]
/// or drop (whichever comes first).
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// Set once removed, so a second Ctrl-C and the drop do not race.
    removed: Mutex<bool>,
}

impl WorkDir {
    /// Creates `$TMPDIR/ward-dev.<pid>.<random>` (a name no one else holds:
    /// `create_dir` fails on an existing folder, and a new name is tried).
    ///
    /// # Errors
    /// [`DevError::Io`] when the temp dir cannot be written.
    pub fn create() -> Result<WorkDir, DevError> {
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let path = base.join(format!(
                "ward-dev.{}.{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(WorkDir {
                        path,
                        removed: Mutex::new(false),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(DevError::Io {
            what: format!("cannot create a folder in {}", base.display()),
            source: last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
        })
    }

    /// The folder.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the folder and everything in it; later calls do nothing.
    pub fn remove(&self) {
        let mut removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        if !*removed {
            *removed = true;
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!(
                    "ward dev: cannot remove {}: {e}; remove it by hand",
                    self.path.display()
                );
            }
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        self.remove();
    }
}
