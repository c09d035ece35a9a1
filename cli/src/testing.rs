//! Helpers for the tests of every crate of the workspace (not `cfg(test)`, so that other
//! crates' tests can use them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Says on a test run's output that the calling test skips its check, and why: written to
/// stderr directly, since the test harness swallows `eprintln!` from a passing test, and a
/// skipped check must not pass silently.
pub fn skip_test(why: impl std::fmt::Display) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// A folder on a full disk: a 64 KiB tmpfs filled to the last byte, unmounted on drop. Needs
/// the right to mount (root with CAP_SYS_ADMIN, as in CI's container); `None` where it is
/// missing, with the reason.
pub struct FullDisk {
    path: PathBuf,
}

impl FullDisk {
    pub fn new() -> Result<FullDisk, String> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ember-full-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&path)
            .output();
        match mounted {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let _ = std::fs::remove_dir(&path);
                return Err(format!(
                    "cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(format!("cannot run mount: {e}"));
            }
        }
        let disk = FullDisk { path };
        // Fill it: a file grown until the disk refuses a single byte more.
        use std::io::Write;
        let mut fill = std::fs::File::create(disk.path.join("fill")).map_err(|e| e.to_string())?;
        while fill.write_all(&[0u8; 512]).is_ok() {}
        while fill.write_all(&[0u8]).is_ok() {}
        Ok(disk)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files under the folder other than the filling one: what a command left behind.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack = vec![self.path.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p != self.path.join("fill") {
                    files.push(p);
                }
            }
        }
        files.sort();
        files
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
