//! Verifying an evidence pack against a pinned public key.
//!
//! Input: a pack directory, the [`PublicKey`] the auditor trusts, and
//! optionally the collection directory the pack was made from. Output: a
//! [`VerifiedPack`] (which only this module can construct, so code that needs
//! a verified pack must go through [`verify`]) or a [`VerifyFailure`] listing
//! every problem found.
//!
//! # What is checked
//!
//! 1. `manifest.sig` is a valid Ed25519 signature by the pinned key over the
//!    bytes of `manifest.json` as found (see [`super::pack`]).
//! 2. `attestation.dsse.json` carries a DSSE signature with the pinned key id
//!    that verifies over the PAE of its payload, and the in-toto statement's
//!    subjects are exactly `manifest.json` plus the listed files, with the same
//!    SHA-256 digests.
//! 3. The manifest parses, has format `syncproof-manifest/v1`, algorithm
//!    `ed25519`, and names the pinned key id as signer.
//! 4. Every listed path is a safe relative path, listed once, and names a
//!    regular file (no symbolic link anywhere on the way) whose size and
//!    SHA-256 match; no other file, directory or link is in the pack besides
//!    the three reserved files.
//! 5. With a collection directory: every listed input exists there as a
//!    regular file with the listed size and SHA-256.
//!
//! All problems are collected, not just the first. If `manifest.sig` does not
//! verify, the manifest is untrusted: file problems are still reported (to
//! help find the cause), and [`VerifyFailure::signature_valid`] is `false` so
//! the caller can say so. Files are hashed as streams and never read whole;
//! the three reserved files are read with size caps.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use walkdir::WalkDir;

use super::dsse::{self, DsseError, Statement};
use super::keys::{KeyId, PublicKey};
use super::manifest::{
    check_relative_path, digest_bytes, digest_reader, Manifest, UnsafePath, ENVELOPE_FILE,
    MANIFEST_FILE, MANIFEST_FORMAT, RESERVED_FILES, SIGNATURE_ALGORITHM, SIGNATURE_FILE,
};

/// Largest `manifest.json` or `attestation.dsse.json` we read (64 MiB).
const MAX_JSON_FILE: u64 = 64 * 1024 * 1024;
/// Largest `manifest.sig` we read; a valid one is exactly 64 bytes.
const MAX_SIG_FILE: u64 = 4096;

/// A pack that passed every check. Only [`verify`] can make one.
#[derive(Clone, Debug)]
pub struct VerifiedPack {
    /// The verified manifest.
    manifest: Manifest,
    /// The pinned key that signed it.
    key_id: KeyId,
    /// SHA-256 of `manifest.json`.
    manifest_sha256: String,
    /// The verified in-toto statement.
    statement: Statement,
}

impl VerifiedPack {
    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The id of the key that signed the pack.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Lowercase hex SHA-256 of `manifest.json`.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// Number of files the manifest lists (reserved files not counted).
    pub fn file_count(&self) -> usize {
        self.manifest.files.len()
    }

    /// The RFC 3339 time the assessment is as of.
    pub fn as_of(&self) -> &str {
        &self.manifest.as_of
    }

    /// The verified in-toto statement (its predicate is the assessment).
    pub fn statement(&self) -> &Statement {
        &self.statement
    }
}

/// Why a pack did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pack did not verify: {} problem(s)", problems.len())]
pub struct VerifyFailure {
    /// Every problem found, in the order checked.
    pub problems: Vec<Problem>,
    /// Whether `manifest.sig` verified. When `false`, file problems were found
    /// by comparing against an unauthenticated manifest.
    pub signature_valid: bool,
}

/// Where a file lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In the pack.
    Pack,
    /// In the collection directory.
    Collection,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Location::Pack => "pack",
            Location::Collection => "collection",
        })
    }
}

/// One thing wrong with a pack. Messages name the file and, where it applies,
/// what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A signature does not verify with the pinned key.
    #[error("`{file}`: signature does not verify with the given public key")]
    BadSignature {
        /// `manifest.sig` or `attestation.dsse.json`.
        file: String,
    },
    /// A file could not be read.
    #[error("{location} file `{path}`: cannot read: {reason}")]
    Unreadable {
        /// Pack or collection.
        location: Location,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// `manifest.json` does not parse as a v1 manifest.
    #[error("`manifest.json`: not a valid manifest: {reason}")]
    InvalidManifest {
        /// The parser's message.
        reason: String,
    },
    /// A manifest header field has an unsupported value.
    #[error("`manifest.json`: `{field}` is `{found}`, expected `{expected}`")]
    UnsupportedManifest {
        /// The field.
        field: &'static str,
        /// The value we support.
        expected: String,
        /// The value found.
        found: String,
    },
    /// The manifest names another signer than the pinned key.
    #[error("`manifest.json`: signer key id is `{found}`, expected the pinned key `{expected}`")]
    SignerMismatch {
        /// The pinned key's id.
        expected: String,
        /// The manifest's `signer.key_id`.
        found: String,
    },
    /// The DSSE envelope is malformed or has no signature by the pinned key.
    #[error("`attestation.dsse.json`: {reason}")]
    InvalidEnvelope {
        /// What is wrong.
        reason: String,
    },
    /// The statement's subjects disagree with the manifest.
    #[error("`attestation.dsse.json`: subject `{name}`: {detail}")]
    SubjectMismatch {
        /// The subject name.
        name: String,
        /// What disagrees.
        detail: String,
    },
    /// A listed path is not a safe relative path.
    #[error("{location} file `{path}`: unsafe path in the manifest: {reason}")]
    UnsafePath {
        /// Pack or collection.
        location: Location,
        /// The path as listed.
        path: String,
        /// Why it is unsafe.
        reason: UnsafePath,
    },
    /// A path is listed more than once, or a reserved file is listed.
    #[error("{location} file `{path}`: {detail}")]
    BadEntry {
        /// Pack or collection.
        location: Location,
        /// The path as listed.
        path: String,
        /// What is wrong with the entry.
        detail: &'static str,
    },
    /// A listed file does not exist.
    #[error("{location} file `{path}`: missing")]
    Missing {
        /// Pack or collection.
        location: Location,
        /// The path.
        path: String,
    },
    /// A listed path (or a directory on its way) is not a regular file.
    #[error("{location} file `{path}`: expected a regular file, found {found}")]
    NotRegularFile {
        /// Pack or collection.
        location: Location,
        /// The path.
        path: String,
        /// What was found instead.
        found: String,
    },
    /// A file's contents differ from the manifest.
    #[error(
        "{location} file `{path}`: sha256 expected {expected_sha256}, found {found_sha256}{}",
        size_note(*expected_size, *found_size)
    )]
    Changed {
        /// Pack or collection.
        location: Location,
        /// The path.
        path: String,
        /// Size the manifest lists.
        expected_size: u64,
        /// Size found.
        found_size: u64,
        /// SHA-256 the manifest lists.
        expected_sha256: String,
        /// SHA-256 found.
        found_sha256: String,
    },
    /// Something is in the pack that the manifest does not list.
    #[error("pack {kind} `{path}`: not listed in the manifest")]
    Unlisted {
        /// The path, relative to the pack.
        path: String,
        /// `file`, `directory`, `symbolic link` or `special file`.
        kind: &'static str,
    },
}

/// `"; size expected A bytes, found B"` when sizes differ, else nothing.
fn size_note(expected: u64, found: u64) -> String {
    if expected == found {
        String::new()
    } else {
        format!("; size expected {expected} bytes, found {found}")
    }
}

impl Problem {
    /// A stable kebab-case code for the kind of problem (documented in
    /// `docs/verify.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Problem::BadSignature { .. } => "bad-signature",
            Problem::Unreadable { .. } => "unreadable",
            Problem::InvalidManifest { .. } => "invalid-manifest",
            Problem::UnsupportedManifest { .. } => "unsupported-manifest",
            Problem::SignerMismatch { .. } => "signer-mismatch",
            Problem::InvalidEnvelope { .. } => "invalid-envelope",
            Problem::SubjectMismatch { .. } => "subject-mismatch",
            Problem::UnsafePath { .. } => "unsafe-path",
            Problem::BadEntry { .. } => "bad-entry",
            Problem::Missing { .. } => "missing",
            Problem::NotRegularFile { .. } => "not-regular-file",
            Problem::Changed { .. } => "digest-mismatch",
            Problem::Unlisted { .. } => "unlisted",
        }
    }
}

/// Verifies `pack` against `pubkey` (and, if given, the collection files it
/// lists under `collection`). See the module docs for the checks.
pub fn verify(
    pack: &Path,
    pubkey: &PublicKey,
    collection: Option<&Path>,
) -> Result<VerifiedPack, VerifyFailure> {
    let mut problems = Vec::new();

    let manifest_bytes = read_reserved(pack, MANIFEST_FILE, MAX_JSON_FILE, &mut problems);
    let sig_bytes = read_reserved(pack, SIGNATURE_FILE, MAX_SIG_FILE, &mut problems);
    let envelope_bytes = read_reserved(pack, ENVELOPE_FILE, MAX_JSON_FILE, &mut problems);

    // 1. The raw signature: nothing in the manifest is trusted without it.
    let signature_valid = match (&manifest_bytes, &sig_bytes) {
        (Some(m), Some(s)) => {
            let ok = pubkey.verify(m, s).is_ok();
            if !ok {
                problems.push(Problem::BadSignature {
                    file: SIGNATURE_FILE.into(),
                });
            }
            ok
        }
        _ => false,
    };

    // 3. The manifest itself.
    let manifest = manifest_bytes
        .as_deref()
        .and_then(|bytes| match Manifest::from_bytes(bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push(Problem::InvalidManifest {
                    reason: match e {
                        super::manifest::ManifestError::Invalid { reason }
                        | super::manifest::ManifestError::Serialise { reason } => reason,
                    },
                });
                None
            }
        });
    if let Some(m) = &manifest {
        check_header(m, pubkey, &mut problems);
    }

    // 2. The DSSE envelope and its statement.
    let statement =
        envelope_bytes
            .as_deref()
            .and_then(|bytes| match dsse::verify_envelope(bytes, pubkey) {
                Ok(statement) => Some(statement),
                Err(DsseError::BadSignature) => {
                    problems.push(Problem::BadSignature {
                        file: ENVELOPE_FILE.into(),
                    });
                    None
                }
                Err(e) => {
                    problems.push(Problem::InvalidEnvelope {
                        reason: e.to_string(),
                    });
                    None
                }
            });
    let manifest_sha256 = manifest_bytes.as_deref().map(|b| digest_bytes(b).1);
    if let (Some(statement), Some(m), Some(sha)) = (&statement, &manifest, &manifest_sha256) {
        check_subjects(statement, m, sha, &mut problems);
    }

    // 4 and 5. Files.
    if let Some(m) = &manifest {
        let listed = check_listed_files(pack, m, &mut problems);
        check_unlisted(pack, &listed, &mut problems);
        if let Some(dir) = collection {
            check_inputs(dir, m, &mut problems);
        }
    }

    match (manifest, statement, manifest_sha256) {
        (Some(manifest), Some(statement), Some(manifest_sha256))
            if signature_valid && problems.is_empty() =>
        {
            Ok(VerifiedPack {
                manifest,
                key_id: pubkey.key_id().clone(),
                manifest_sha256,
                statement,
            })
        }
        _ => Err(VerifyFailure {
            problems,
            signature_valid,
        }),
    }
}

/// Checks the manifest's format, algorithm and signer against the pinned key.
fn check_header(m: &Manifest, pubkey: &PublicKey, problems: &mut Vec<Problem>) {
    if m.format != MANIFEST_FORMAT {
        problems.push(Problem::UnsupportedManifest {
            field: "format",
            expected: MANIFEST_FORMAT.into(),
            found: m.format.clone(),
        });
    }
    if m.signer.algorithm != SIGNATURE_ALGORITHM {
        problems.push(Problem::UnsupportedManifest {
            field: "signer.algorithm",
            expected: SIGNATURE_ALGORITHM.into(),
            found: m.signer.algorithm.clone(),
        });
    }
    if m.signer.key_id != pubkey.key_id().as_str() {
        problems.push(Problem::SignerMismatch {
            expected: pubkey.key_id().to_string(),
            found: m.signer.key_id.clone(),
        });
    }
}

/// Checks that the statement's subjects are exactly `manifest.json` and the
/// listed files, with the same SHA-256 digests.
fn check_subjects(
    statement: &Statement,
    m: &Manifest,
    manifest_sha256: &str,
    problems: &mut Vec<Problem>,
) {
    let mut expected: BTreeMap<&str, &str> = BTreeMap::new();
    expected.insert(MANIFEST_FILE, manifest_sha256);
    for f in &m.files {
        expected.entry(f.path.as_str()).or_insert(f.sha256.as_str());
    }
    let mut seen = BTreeSet::new();
    for subject in &statement.subject {
        let name = subject.name.as_str();
        if !seen.insert(name) {
            problems.push(Problem::SubjectMismatch {
                name: name.into(),
                detail: "listed more than once".into(),
            });
            continue;
        }
        let found = subject.digest.get("sha256").map(String::as_str);
        match (expected.get(name), found) {
            (None, _) => problems.push(Problem::SubjectMismatch {
                name: name.into(),
                detail: "not in the manifest".into(),
            }),
            (Some(_), None) => problems.push(Problem::SubjectMismatch {
                name: name.into(),
                detail: "has no sha256 digest".into(),
            }),
            (Some(want), Some(got)) if want != &got => problems.push(Problem::SubjectMismatch {
                name: name.into(),
                detail: format!("sha256 expected {want} (manifest), found {got}"),
            }),
            _ => {}
        }
    }
    for name in expected.keys() {
        if !seen.contains(name) {
            problems.push(Problem::SubjectMismatch {
                name: (*name).into(),
                detail: "missing from the statement".into(),
            });
        }
    }
}

/// Checks every listed pack file; returns the set of listed paths (safe ones
/// only) for the unlisted-file walk.
fn check_listed_files(pack: &Path, m: &Manifest, problems: &mut Vec<Problem>) -> BTreeSet<String> {
    let mut listed = BTreeSet::new();
    for entry in &m.files {
        if let Err(reason) = check_relative_path(&entry.path) {
            problems.push(Problem::UnsafePath {
                location: Location::Pack,
                path: entry.path.clone(),
                reason,
            });
            continue;
        }
        if RESERVED_FILES.contains(&entry.path.as_str()) {
            problems.push(Problem::BadEntry {
                location: Location::Pack,
                path: entry.path.clone(),
                detail: "reserved file listed in the manifest",
            });
            continue;
        }
        if !listed.insert(entry.path.clone()) {
            problems.push(Problem::BadEntry {
                location: Location::Pack,
                path: entry.path.clone(),
                detail: "listed more than once",
            });
            continue;
        }
        check_file(
            pack,
            Location::Pack,
            &entry.path,
            entry.size,
            &entry.sha256,
            problems,
        );
    }
    listed
}

/// Checks every listed input under the collection directory.
fn check_inputs(dir: &Path, m: &Manifest, problems: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    for input in &m.inputs {
        if let Err(reason) = check_relative_path(&input.path) {
            problems.push(Problem::UnsafePath {
                location: Location::Collection,
                path: input.path.clone(),
                reason,
            });
            continue;
        }
        if !seen.insert(input.path.as_str()) {
            problems.push(Problem::BadEntry {
                location: Location::Collection,
                path: input.path.clone(),
                detail: "listed more than once",
            });
            continue;
        }
        check_file(
            dir,
            Location::Collection,
            &input.path,
            input.size,
            &input.sha256,
            problems,
        );
    }
}

/// Opens `root/rel` (a safe relative path) and checks its size and digest.
fn check_file(
    root: &Path,
    location: Location,
    rel: &str,
    size: u64,
    sha256: &str,
    problems: &mut Vec<Problem>,
) {
    let file = match open_regular(root, rel) {
        Ok(file) => file,
        Err(e) => {
            problems.push(e.into_problem(location, rel));
            return;
        }
    };
    match digest_reader(file) {
        Ok((found_size, found_sha256)) => {
            if found_size != size || found_sha256 != sha256 {
                problems.push(Problem::Changed {
                    location,
                    path: rel.into(),
                    expected_size: size,
                    found_size,
                    expected_sha256: sha256.into(),
                    found_sha256,
                });
            }
        }
        Err(e) => problems.push(Problem::Unreadable {
            location,
            path: rel.into(),
            reason: e.to_string(),
        }),
    }
}

/// Why a path could not be opened as a regular file.
enum OpenFailure {
    /// It (or a directory on its way) does not exist.
    Missing,
    /// It, or a component on the way, is something else.
    NotRegular(String),
    /// An I/O error.
    Io(io::Error),
}

impl OpenFailure {
    /// Turns the failure into a problem about `path`.
    fn into_problem(self, location: Location, path: &str) -> Problem {
        match self {
            OpenFailure::Missing => Problem::Missing {
                location,
                path: path.into(),
            },
            OpenFailure::NotRegular(found) => Problem::NotRegularFile {
                location,
                path: path.into(),
                found,
            },
            OpenFailure::Io(e) => Problem::Unreadable {
                location,
                path: path.into(),
                reason: e.to_string(),
            },
        }
    }
}

/// Describes a file type for messages.
fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symbolic link"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else {
        "special file"
    }
}

/// Opens `root/rel` for reading, insisting that every directory on the way is
/// a real directory and the last component a regular file: no symbolic links
/// anywhere (checked with `symlink_metadata`, then re-checked on the opened
/// handle so a swap between the check and the open is caught).
fn open_regular(root: &Path, rel: &str) -> Result<File, OpenFailure> {
    let components: Vec<&str> = rel.split('/').collect();
    let mut path = root.to_path_buf();
    let mut so_far = String::new();
    for (i, component) in components.iter().enumerate() {
        path.push(component);
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(component);
        let last = i + 1 == components.len();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenFailure::Missing),
            Err(e) => return Err(OpenFailure::Io(e)),
        };
        let ft = meta.file_type();
        if last {
            if !ft.is_file() {
                return Err(OpenFailure::NotRegular(format!("a {}", kind_of(ft))));
            }
            let file = File::open(&path).map_err(OpenFailure::Io)?;
            let opened = file.metadata().map_err(OpenFailure::Io)?;
            if !opened.is_file() || !same_file(&meta, &opened) {
                return Err(OpenFailure::NotRegular(
                    "a file that changed while being verified".into(),
                ));
            }
            return Ok(file);
        } else if !ft.is_dir() {
            return Err(OpenFailure::NotRegular(format!(
                "a {} at `{so_far}`",
                kind_of(ft)
            )));
        }
    }
    // `rel` passed check_relative_path, so it has at least one component.
    Err(OpenFailure::Missing)
}

/// Whether two metadata values describe the same file (device and inode).
#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Without inode numbers, fall back to comparing size.
#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len()
}

/// Reads one of the reserved top-level files, reporting problems; at most
/// `max` bytes.
fn read_reserved(
    pack: &Path,
    name: &str,
    max: u64,
    problems: &mut Vec<Problem>,
) -> Option<Vec<u8>> {
    let file = match open_regular(pack, name) {
        Ok(file) => file,
        Err(e) => {
            problems.push(e.into_problem(Location::Pack, name));
            return None;
        }
    };
    let mut bytes = Vec::new();
    match file.take(max + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > max => {
            problems.push(Problem::Unreadable {
                location: Location::Pack,
                path: name.into(),
                reason: format!("larger than {max} bytes"),
            });
            None
        }
        Ok(_) => Some(bytes),
        Err(e) => {
            problems.push(Problem::Unreadable {
                location: Location::Pack,
                path: name.into(),
                reason: e.to_string(),
            });
            None
        }
    }
}

/// Walks the pack (never following links) and reports anything that is not
/// a listed file, a directory holding one, or a reserved top-level file.
fn check_unlisted(pack: &Path, listed: &BTreeSet<String>, problems: &mut Vec<Problem>) {
    // Every directory that holds a listed file, e.g. `a` and `a/b` for `a/b/c`.
    let mut dirs = BTreeSet::new();
    for path in listed {
        let mut prefix = path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            dirs.insert(parent.to_string());
            prefix = parent;
        }
    }
    let mut walk = WalkDir::new(pack)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(next) = walk.next() {
        let entry = match next {
            Ok(entry) => entry,
            Err(e) => {
                let path = e
                    .path()
                    .and_then(|p| p.strip_prefix(pack).ok())
                    .map(display_rel)
                    .unwrap_or_default();
                problems.push(Problem::Unreadable {
                    location: Location::Pack,
                    path,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let rel_path = entry.path().strip_prefix(pack).unwrap_or(entry.path());
        let rel = display_rel(rel_path);
        let ft = entry.file_type();
        let is_reserved = entry.depth() == 1 && RESERVED_FILES.contains(&rel.as_str());
        if listed.contains(&rel) || is_reserved {
            // Checked (type, size, digest) by the listed-file checks.
            continue;
        }
        if ft.is_dir() && !ft.is_symlink() && dirs.contains(&rel) {
            continue;
        }
        if ft.is_symlink() && dirs.contains(&rel) {
            // Reported as "expected a regular file, found a symbolic link at"
            // for each listed file below it.
            continue;
        }
        problems.push(Problem::Unlisted {
            path: rel,
            kind: kind_of(ft),
        });
        if ft.is_dir() {
            walk.skip_current_dir();
        }
    }
}

/// A relative path as `/`-separated text (lossy for non-UTF-8 names).
fn display_rel(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl VerifyFailure {
    /// Whether any problem has the given [`Problem::code`].
    pub fn has(&self, code: &str) -> bool {
        self.problems.iter().any(|p| p.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::keys::PrivateKey;
    use crate::evidence::pack::tests::{test_builder, test_key, test_options};
    use crate::evidence::pack::PackBuilder;
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn write_pack() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        test_builder()
            .write(&out, test_options(), &test_key())
            .unwrap();
        (dir, out)
    }

    fn fail(pack: &Path) -> VerifyFailure {
        verify(pack, &test_key().public_key(), None).unwrap_err()
    }

    fn codes(f: &VerifyFailure) -> Vec<&'static str> {
        f.problems.iter().map(Problem::code).collect()
    }

    /// Re-signs a (modified) manifest with the test key, so only the check
    /// under test fails.
    fn resign(pack: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let key = test_key();
        let mut value: serde_json::Value =
            serde_json::from_slice(&fs::read(pack.join(MANIFEST_FILE)).unwrap()).unwrap();
        edit(&mut value);
        let mut bytes = serde_json::to_vec_pretty(&value).unwrap();
        bytes.push(b'\n');
        fs::write(pack.join(MANIFEST_FILE), &bytes).unwrap();
        fs::write(pack.join(SIGNATURE_FILE), key.sign(&bytes)).unwrap();
    }

    #[test]
    fn valid_pack_verifies() {
        let (_dir, pack) = write_pack();
        let v = verify(&pack, &test_key().public_key(), None).unwrap();
        assert_eq!(v.file_count(), 3);
        assert_eq!(v.key_id(), test_key().key_id());
        assert_eq!(v.as_of(), "2025-01-31T00:00:00Z");
        assert_eq!(
            v.manifest_sha256(),
            digest_bytes(&fs::read(pack.join(MANIFEST_FILE)).unwrap()).1
        );
        assert_eq!(v.statement().predicate["findings"], 2);
        assert_eq!(v.manifest().files.len(), 3);
    }

    #[test]
    fn wrong_key_fails_both_signatures() {
        let (_dir, pack) = write_pack();
        let other = PrivateKey::from_seed(&[9; 32]).unwrap().public_key();
        let f = verify(&pack, &other, None).unwrap_err();
        assert!(!f.signature_valid);
        assert!(f.has("bad-signature"), "{:?}", f.problems);
        assert!(f.has("signer-mismatch"));
        assert!(f.has("invalid-envelope"));
    }

    #[test]
    fn tampered_file_is_named_with_expected_and_found_digest() {
        let (_dir, pack) = write_pack();
        fs::write(pack.join("report.md"), "# Report!\n").unwrap();
        let f = fail(&pack);
        assert!(f.signature_valid);
        assert_eq!(codes(&f), ["digest-mismatch"]);
        let text = f.problems[0].to_string();
        assert!(text.contains("`report.md`"), "{text}");
        assert!(text.contains(&digest_bytes(b"# Report\n").1), "{text}");
        assert!(text.contains(&digest_bytes(b"# Report!\n").1), "{text}");
        assert!(text.contains("size expected 9 bytes, found 10"), "{text}");
    }

    #[test]
    fn missing_file_fails() {
        let (_dir, pack) = write_pack();
        fs::remove_file(pack.join("sarif/findings.sarif")).unwrap();
        assert_eq!(codes(&fail(&pack)), ["missing"]);
        let (_dir, pack) = write_pack();
        fs::remove_file(pack.join("report.json")).unwrap();
        assert_eq!(codes(&fail(&pack)), ["missing"]);
    }

    #[test]
    fn missing_reserved_files_fail() {
        for name in RESERVED_FILES {
            let (_dir, pack) = write_pack();
            fs::remove_file(pack.join(name)).unwrap();
            let f = fail(&pack);
            assert!(f.has("missing"), "{name}: {:?}", f.problems);
        }
    }

    #[test]
    fn unlisted_file_and_directory_fail() {
        let (_dir, pack) = write_pack();
        fs::write(pack.join("extra.txt"), "x").unwrap();
        fs::create_dir(pack.join("empty")).unwrap();
        fs::write(pack.join("sarif/extra.sarif"), "x").unwrap();
        let f = fail(&pack);
        assert_eq!(codes(&f), ["unlisted", "unlisted", "unlisted"]);
        let all: Vec<String> = f.problems.iter().map(ToString::to_string).collect();
        assert!(all.iter().any(|p| p.contains("`extra.txt`")), "{all:?}");
        assert!(
            all.iter().any(|p| p.contains("directory `empty`")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|p| p.contains("`sarif/extra.sarif`")),
            "{all:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_anywhere_fail() {
        use std::os::unix::fs::symlink;
        // A listed file replaced by a link to identical content.
        let (dir, pack) = write_pack();
        let outside = dir.path().join("outside.md");
        fs::copy(pack.join("report.md"), &outside).unwrap();
        fs::remove_file(pack.join("report.md")).unwrap();
        symlink(&outside, pack.join("report.md")).unwrap();
        let f = fail(&pack);
        assert_eq!(codes(&f), ["not-regular-file"], "{:?}", f.problems);
        assert!(f.problems[0].to_string().contains("symbolic link"));

        // A listed directory replaced by a link to an identical directory.
        let (dir, pack) = write_pack();
        let outside = dir.path().join("sarif-copy");
        fs::rename(pack.join("sarif"), &outside).unwrap();
        symlink(&outside, pack.join("sarif")).unwrap();
        let f = fail(&pack);
        assert_eq!(codes(&f), ["not-regular-file"], "{:?}", f.problems);
        assert!(f.problems[0]
            .to_string()
            .contains("symbolic link at `sarif`"));

        // An extra link, and a reserved file that is a link.
        let (dir, pack) = write_pack();
        symlink("/etc/passwd", pack.join("link")).unwrap();
        let f = fail(&pack);
        assert_eq!(codes(&f), ["unlisted"]);
        assert!(f.problems[0].to_string().contains("symbolic link `link`"));
        let sig = dir.path().join("sig");
        fs::rename(pack.join(SIGNATURE_FILE), &sig).unwrap();
        symlink(&sig, pack.join(SIGNATURE_FILE)).unwrap();
        assert!(fail(&pack).has("not-regular-file"));
    }

    #[test]
    fn edited_manifest_fails_signature_and_statement() {
        let (_dir, pack) = write_pack();
        let path = pack.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("2025-01-31", "2025-02-28")).unwrap();
        let f = fail(&pack);
        assert!(!f.signature_valid);
        assert!(f.has("bad-signature"));
        assert!(f.has("subject-mismatch"));
    }

    #[test]
    fn re_signed_manifest_with_foreign_signer_fails() {
        let (_dir, pack) = write_pack();
        resign(&pack, |v| v["signer"]["key_id"] = "00".repeat(32).into());
        let f = fail(&pack);
        assert!(f.signature_valid);
        assert!(f.has("signer-mismatch"), "{:?}", f.problems);
    }

    #[test]
    fn re_signed_manifest_with_unsafe_paths_fails_without_touching_them() {
        for bad in ["../outside", "/etc/passwd", "a\\b", "a//b", "./report.md"] {
            let (_dir, pack) = write_pack();
            resign(&pack, |v| v["files"][0]["path"] = bad.into());
            let f = fail(&pack);
            assert!(f.has("unsafe-path"), "{bad}: {:?}", f.problems);
        }
    }

    #[test]
    fn re_signed_manifest_with_duplicate_or_reserved_entry_fails() {
        let (_dir, pack) = write_pack();
        resign(&pack, |v| {
            let first = v["files"][0].clone();
            v["files"].as_array_mut().unwrap().push(first);
        });
        assert!(fail(&pack).has("bad-entry"));
        let (_dir, pack) = write_pack();
        resign(&pack, |v| v["files"][0]["path"] = MANIFEST_FILE.into());
        assert!(fail(&pack).has("bad-entry"));
    }

    #[test]
    fn re_signed_manifest_dropping_a_file_fails_on_statement_and_walk() {
        let (_dir, pack) = write_pack();
        resign(&pack, |v| {
            v["files"].as_array_mut().unwrap().remove(0);
        });
        let f = fail(&pack);
        assert!(f.signature_valid);
        assert!(f.has("subject-mismatch"), "{:?}", f.problems);
        assert!(f.has("unlisted"));
    }

    #[test]
    fn garbage_manifest_is_a_problem_not_a_crash() {
        for garbage in [&b""[..], b"{", b"null", b"\xff\xfe\x00", b"{\"format\":1}"] {
            let (_dir, pack) = write_pack();
            fs::write(pack.join(MANIFEST_FILE), garbage).unwrap();
            let f = fail(&pack);
            assert!(f.has("invalid-manifest"), "{:?}", f.problems);
            assert!(f.has("bad-signature"));
        }
    }

    #[test]
    fn malformed_signature_file_is_a_bad_signature() {
        for sig in [&b""[..], &[0u8; 63], &[0u8; 65], &[0xff; 64]] {
            let (_dir, pack) = write_pack();
            fs::write(pack.join(SIGNATURE_FILE), sig).unwrap();
            assert_eq!(codes(&fail(&pack)), ["bad-signature"]);
        }
    }

    #[test]
    fn empty_pack_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(codes(&fail(dir.path())), ["missing", "missing", "missing"]);
    }

    #[test]
    fn collection_inputs_are_checked() {
        let (dir, pack) = write_pack();
        let collection = dir.path().join("collection");
        fs::create_dir_all(collection.join("sync")).unwrap();
        fs::write(collection.join("collection.yaml"), "c\n").unwrap();
        fs::write(collection.join("sync/b.jsonl"), "b\n").unwrap();
        fs::write(collection.join("unrelated.txt"), "ignored").unwrap();
        let key = test_key().public_key();
        assert!(verify(&pack, &key, Some(&collection)).is_ok());

        fs::write(collection.join("sync/b.jsonl"), "B\n").unwrap();
        let f = verify(&pack, &key, Some(&collection)).unwrap_err();
        assert_eq!(codes(&f), ["digest-mismatch"]);
        assert!(f.problems[0]
            .to_string()
            .starts_with("collection file `sync/b.jsonl`"));

        fs::remove_file(collection.join("sync/b.jsonl")).unwrap();
        let f = verify(&pack, &key, Some(&collection)).unwrap_err();
        assert_eq!(codes(&f), ["missing"]);
    }

    #[test]
    fn flipping_a_byte_of_any_file_fails() {
        let (_dir, pack) = write_pack();
        let key = test_key().public_key();
        let files = crate::evidence::pack::tests::read_tree(&pack);
        for (name, bytes) in &files {
            // Every byte of small files; ~100 spread-out bytes of larger ones
            // (debug-build Ed25519 is slow; the proptest covers the rest).
            let step = (bytes.len() / 100).max(1);
            let positions = (0..bytes.len()).step_by(step).chain([bytes.len() - 1]);
            for i in positions {
                let mut changed = bytes.clone();
                changed[i] ^= 0x01;
                fs::write(pack.join(name), &changed).unwrap();
                let f = verify(&pack, &key, None).unwrap_err();
                assert!(!f.problems.is_empty(), "{name}[{i}]");
                fs::write(pack.join(name), bytes).unwrap();
            }
        }
        assert!(verify(&pack, &key, None).is_ok());
    }

    /// Strategy: up to 5 files with safe names and arbitrary contents.
    fn files() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
        proptest::collection::btree_map(
            "[a-z]{1,6}(/[a-z]{1,6})?\\.txt",
            proptest::collection::vec(any::<u8>(), 0..64),
            1..5,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn sign_then_verify_always_succeeds_and_any_flip_fails(
            files in files(),
            seed in any::<[u8; 32]>(),
            pick in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let key = PrivateKey::from_seed(&seed).unwrap();
            let mut builder = PackBuilder::new();
            for (path, bytes) in &files {
                // Names like `a.txt` and `a.txt/b.txt` cannot both exist.
                if builder.add(path.clone(), bytes.clone()).is_err() {
                    continue;
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let pack = dir.path().join("pack");
            builder.write(&pack, test_options(), &key).unwrap();
            prop_assert!(verify(&pack, &key.public_key(), None).is_ok());

            // Flip one bit of one byte of one non-empty file.
            let tree = crate::evidence::pack::tests::read_tree(&pack);
            let candidates: Vec<(&String, &Vec<u8>)> =
                tree.iter().filter(|(_, b)| !b.is_empty()).collect();
            let (name, bytes) = candidates[pick.index(candidates.len())];
            let mut changed = bytes.clone();
            let at = pick.index(changed.len());
            changed[at] ^= 1 << bit;
            fs::write(pack.join(name), &changed).unwrap();
            let failure = verify(&pack, &key.public_key(), None).unwrap_err();
            prop_assert!(!failure.problems.is_empty());
        }
    }
}
