//! The core's own log file: `<data_dir>/daemon.log`, written by the core itself (not a redirected
//! stderr) and rotated by size, so a flood of log lines can never fill the disk.
//!
//! When a line would take `daemon.log` past `max_bytes`, the files shift (`daemon.log.N-1` →
//! `daemon.log.N`, ..., `daemon.log` → `daemon.log.1`, the oldest dropped) and a fresh `daemon.log`
//! starts. On disk the log never exceeds `(keep + 1) * max_bytes` bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pgpchat_actors::settings::Settings;

/// The file name of the core's log, in its data directory.
pub const LOG_FILE_NAME: &str = "daemon.log";

/// A log file that rotates itself at `max_bytes`, keeping `keep` older files.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Open (append to) `path`, creating it 0600: a log line may name contacts and addresses.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let file = open_log(path, false)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file,
            size,
        })
    }

    /// `daemon.log.N`.
    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file = open_log(&self.path, true)?;
        } else {
            // Renaming over the oldest drops it.
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = open_log(&self.path, true)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_log(path: &Path, truncate: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
}

impl Write for RotatingFile {
    /// One call is one log record (the logger formats a record, then writes it at once), so a
    /// record is never split across two files. A record longer than a whole file is cut.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf
            .len()
            .min(usize::try_from(self.max_bytes).unwrap_or(usize::MAX));
        if self.size > 0 && self.size + take as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&buf[..take])?;
        self.size += take as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The core's file, once attached: the logger is process-wide, and so is its file. Attached only
/// after the identity is unlocked, so a core that cannot start leaves the data directory untouched.
static FILE: Mutex<Option<RotatingFile>> = Mutex::new(None);

/// From now on, log lines also go to `file`.
pub fn attach(file: RotatingFile) {
    if let Ok(mut f) = FILE.lock() {
        *f = Some(file);
    }
}

/// Write `line` to the attached file only (what stderr gets another way: a panic, the final error).
pub fn to_file_only(line: &str) {
    if let Ok(mut f) = FILE.lock() {
        if let Some(f) = f.as_mut() {
            let _ = f.write(format!("{line}\n").as_bytes());
        }
    }
}

/// Where the core's log lines go: its file (once attached), and stderr (a foreground core shows
/// them; the prompt starts its background core with stderr closed).
pub struct CoreLogSink;

impl Write for CoreLogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut f) = FILE.lock() {
            if let Some(f) = f.as_mut() {
                // A full disk must not stop the core; stderr still gets the line.
                let _ = f.write(buf);
            }
        }
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Ok(mut f) = FILE.lock() {
            if let Some(f) = f.as_mut() {
                let _ = f.flush();
            }
        }
        io::stderr().flush()
    }
}

/// Send the core's log lines to `<data_dir>/daemon.log` from now on (stderr only if it cannot be
/// opened).
pub fn attach_core_log_file(settings: &Settings) {
    let path = settings.node.data_dir.join(LOG_FILE_NAME);
    match RotatingFile::open(
        &path,
        settings.log.max_file_bytes,
        settings.log.rotated_files,
    ) {
        Ok(f) => attach(f),
        Err(e) => log::warn!(
            "cannot open {}: {e}; logging to stderr only",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(dir: &Path) -> (usize, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
        (n, bytes)
    }

    #[test]
    fn rotation_keeps_the_log_under_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOG_FILE_NAME);
        let (max, keep) = (1000u64, 2usize);
        let mut f = RotatingFile::open(&path, max, keep).unwrap();
        for i in 0..1000 {
            f.write_all(format!("line {i:05} of a flood of log lines\n").as_bytes())
                .unwrap();
        }
        let (files, bytes) = total(tmp.path());
        assert_eq!(files, keep + 1, "daemon.log, .1 and .2");
        assert!(bytes <= (keep as u64 + 1) * max, "{bytes} bytes on disk");
        assert!(!tmp.path().join("daemon.log.3").exists());
        // The newest lines are in daemon.log, the ones just before in daemon.log.1.
        let cur = std::fs::read_to_string(&path).unwrap();
        assert!(
            cur.ends_with("line 00999 of a flood of log lines\n"),
            "{cur}"
        );
        let prev = std::fs::read_to_string(tmp.path().join("daemon.log.1")).unwrap();
        let last_prev: u32 = prev.lines().last().unwrap()[5..10].parse().unwrap();
        let first_cur: u32 = cur.lines().next().unwrap()[5..10].parse().unwrap();
        assert_eq!(last_prev + 1, first_cur, "no line lost at the rotation");
        // Reopening appends (a restarted core keeps its history) and still rotates.
        drop(f);
        let mut f = RotatingFile::open(&path, max, keep).unwrap();
        f.write_all(&[b'x'; 5000]).unwrap();
        let (_, bytes) = total(tmp.path());
        assert!(
            bytes <= (keep as u64 + 1) * max,
            "an overlong record is cut"
        );
    }

    #[test]
    fn without_rotated_files_the_log_starts_over() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOG_FILE_NAME);
        let mut f = RotatingFile::open(&path, 100, 0).unwrap();
        for _ in 0..50 {
            f.write_all(b"0123456789abcdef\n").unwrap();
        }
        assert_eq!(total(tmp.path()).0, 1);
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
    }
}
