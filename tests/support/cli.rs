//! Running the `bpc` binary from the repository root, and scratch directories, for the
//! command-line tests (`tests/cli.rs`, `tests/train.rs`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `bpc` from the repository root.
pub fn bpc(args: &[&str]) -> Output {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("bpc");
    cmd.current_dir(root()).args(args);
    cmd.output().expect("bpc runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and expects the exit status `code` without a panic; returns stderr.
pub fn fails_with(code: i32, args: &[&str]) -> String {
    let o = bpc(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "bpc {args:?} should exit with {code}:\n{err}");
    assert!(!err.contains("panicked"), "bpc {args:?} panicked:\n{err}");
    err
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bpc-cli-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
