//! Helpers shared by the subcommand tests: running the binary on the sample
//! collection or on an edited temporary copy of it, and hashing.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use sha2::{Digest, Sha256};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sample collection.
pub(crate) fn samples() -> PathBuf {
    repo().join("samples")
}

/// A fixture collection under `tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// `syncproof --error-format plain ARGS...`.
pub(crate) fn syncproof<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::cargo_bin("syncproof").unwrap();
    cmd.arg("--error-format").arg("plain").args(args);
    cmd
}

/// Runs a command that must exit with `code` and returns its stdout.
pub(crate) fn stdout_of(cmd: &mut Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().clone();
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must refuse its input (exit 2, nothing on stdout) and
/// returns its stderr.
pub(crate) fn refusal_of(cmd: &mut Command) -> String {
    let out = cmd.assert().code(2).stdout("").get_output().clone();
    String::from_utf8(out.stderr).unwrap()
}

/// Asserts that `stderr` names every one of `needles`.
pub(crate) fn assert_names(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
}

/// Runs a command that must exit with `code` and parses its stdout as JSON.
pub(crate) fn json_of(cmd: &mut Command, code: i32) -> serde_json::Value {
    serde_json::from_str(&stdout_of(cmd, code)).unwrap()
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Copies a directory tree (regular files only).
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temporary copy of the samples; the collection is `dir/c`.
pub(crate) fn samples_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    copy_dir(&samples(), &c);
    (dir, c)
}

/// Replaces 1-based line `n` of `path` with `f(line)`.
pub(crate) fn edit_line(path: &Path, n: usize, f: impl FnOnce(&str) -> String) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let new = f(&lines[n - 1]);
    assert_ne!(new, lines[n - 1], "the edit must change line {n}");
    lines[n - 1] = new;
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Replaces `from` (which must occur) with `to` in line `n` of `path`.
pub(crate) fn replace_in_line(path: &Path, n: usize, from: &str, to: &str) {
    edit_line(path, n, |l| {
        assert!(l.contains(from), "line {n} lacks {from:?}: {l}");
        l.replacen(from, to, 1)
    });
}
