//! The pack manifest (`manifest.json`): what a pack contains and what it was
//! made from, plus the helpers every pack reader and writer shares (path
//! safety, streaming SHA-256).
//!
//! Input: the pack's files and the collection's [`InputFile`]s. Output: the
//! exact bytes of `manifest.json`, which `manifest.sig` signs.
//!
//! # Encoding
//!
//! `manifest.json` is UTF-8 JSON written by `serde_json`'s pretty printer
//! (two-space indent, `\n` line ends) followed by one `\n`. Keys appear in this
//! order:
//!
//! ```text
//! format   "syncproof-manifest/v1"
//! tool     {name, version}
//! as_of    RFC 3339 timestamp the assessment was made "as of"
//! signer   {key_id, algorithm: "ed25519"}
//! inputs   [{path, size, sha256, kind}]   collection files, sorted by path
//! files    [{path, size, sha256}]         pack files, sorted by path
//! ```
//!
//! `files` lists every file of the pack except the three reserved ones
//! ([`MANIFEST_FILE`], [`SIGNATURE_FILE`], [`ENVELOPE_FILE`]). Paths are
//! relative, `/`-separated and never contain `..`, `.`, empty components or
//! backslashes. Digests are lowercase hex SHA-256. Readers verify the signature
//! over the bytes as found; they never re-serialise the manifest.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ingest::model::InputFile;

/// The value of the manifest's `format` field.
pub const MANIFEST_FORMAT: &str = "syncproof-manifest/v1";
/// The signature algorithm named in `signer.algorithm`.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";
/// The manifest's file name in a pack.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The raw Ed25519 signature over `manifest.json`.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// The DSSE envelope holding the in-toto statement.
pub const ENVELOPE_FILE: &str = "attestation.dsse.json";
/// The three files a pack holds besides the ones its manifest lists.
pub const RESERVED_FILES: [&str; 3] = [MANIFEST_FILE, SIGNATURE_FILE, ENVELOPE_FILE];

/// Errors reading or writing a manifest.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ManifestError {
    /// The bytes are not a valid v1 manifest.
    #[error("manifest is not valid: {reason}")]
    #[diagnostic(code(syncproof::manifest::invalid))]
    Invalid {
        /// What is wrong (from the JSON parser).
        reason: String,
    },
    /// Serialising failed (not expected).
    #[error("cannot serialise the manifest: {reason}")]
    #[diagnostic(code(syncproof::manifest::serialise))]
    Serialise {
        /// What went wrong.
        reason: String,
    },
}

/// The tool that wrote a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `syncproof`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// Who signed a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    /// The signing key's id (hex SHA-256 of its SPKI DER).
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
}

/// One file of the pack.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the pack root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// The contents of `manifest.json`. Field order here is the order on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The tool that wrote the pack.
    pub tool: Tool,
    /// The RFC 3339 time the assessment is "as of".
    pub as_of: String,
    /// The signer.
    pub signer: Signer,
    /// The collection files the assessment read, sorted by path.
    pub inputs: Vec<InputFile>,
    /// The pack's files (except the reserved ones), sorted by path.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Serialises as pretty JSON plus a final newline: the bytes that get
    /// signed.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| ManifestError::Serialise {
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Parses manifest bytes (any JSON formatting; unknown fields rejected).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid {
            reason: e.to_string(),
        })
    }
}

/// Why a relative path is unsafe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path starts with `/` (or a drive letter).
    #[error("path is absolute")]
    Absolute,
    /// The path contains a backslash.
    #[error("path contains a backslash")]
    Backslash,
    /// The path has an empty component (`a//b`, trailing `/`).
    #[error("path has an empty component")]
    EmptyComponent,
    /// The path has a `.` or `..` component.
    #[error("path has a `.` or `..` component")]
    DotComponent,
    /// The path contains a NUL or other control character.
    #[error("path contains a control character")]
    ControlCharacter,
}

/// Checks that `path` is a safe relative `/`-separated path: not empty, not
/// absolute, no backslash, no empty, `.` or `..` component, no control
/// characters. Such a path cannot leave the directory it is joined to.
pub fn check_relative_path(path: &str) -> Result<(), UnsafePath> {
    if path.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if path.starts_with('/') {
        return Err(UnsafePath::Absolute);
    }
    if path.contains('\\') {
        return Err(UnsafePath::Backslash);
    }
    if path.chars().any(char::is_control) {
        return Err(UnsafePath::ControlCharacter);
    }
    // `C:foo` would be drive-relative on Windows.
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err(UnsafePath::Absolute);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(UnsafePath::EmptyComponent),
            "." | ".." => return Err(UnsafePath::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

/// Size and lowercase hex SHA-256 of a byte slice.
pub fn digest_bytes(bytes: &[u8]) -> (u64, String) {
    (bytes.len() as u64, hex::encode(Sha256::digest(bytes)))
}

/// Size and lowercase hex SHA-256 of everything `reader` yields, read in
/// 64 KiB chunks so huge files are never held in memory.
pub fn digest_reader(mut reader: impl Read) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Size and SHA-256 of a file, streamed.
pub fn digest_file(path: &Path) -> io::Result<(u64, String)> {
    digest_reader(File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            tool: Tool {
                name: "syncproof".into(),
                version: "0.1.0".into(),
            },
            as_of: "2025-01-31T00:00:00Z".into(),
            signer: Signer {
                key_id: "ab".repeat(32),
                algorithm: SIGNATURE_ALGORITHM.into(),
            },
            inputs: vec![InputFile {
                path: "collection.yaml".into(),
                size: 3,
                sha256: "00".repeat(32),
                kind: "manifest".into(),
            }],
            files: vec![FileEntry {
                path: "report.json".into(),
                size: 2,
                sha256: "11".repeat(32),
            }],
        }
    }

    #[test]
    fn serialises_in_documented_field_order_with_trailing_newline() {
        let bytes = sample().to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.ends_with("}\n"));
        let order: Vec<usize> = [
            "\"format\"",
            "\"tool\"",
            "\"as_of\"",
            "\"signer\"",
            "\"inputs\"",
            "\"files\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), sample());
    }

    #[test]
    fn parse_errors_are_errors() {
        assert!(Manifest::from_bytes(b"").is_err());
        assert!(Manifest::from_bytes(b"{\"format\":1}").is_err());
        let mut value = serde_json::to_value(sample()).unwrap();
        value["extra"] = serde_json::json!(1);
        assert!(Manifest::from_bytes(value.to_string().as_bytes()).is_err());
    }

    #[test]
    fn safe_paths_pass() {
        for p in [
            "a",
            "a/b.json",
            "reports/x/y.sarif",
            "ünïcode name.txt",
            "..a",
            "a..",
        ] {
            assert_eq!(check_relative_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn unsafe_paths_fail() {
        let cases = [
            ("", UnsafePath::Empty),
            ("/etc/passwd", UnsafePath::Absolute),
            ("C:evil", UnsafePath::Absolute),
            ("a\\b", UnsafePath::Backslash),
            ("a//b", UnsafePath::EmptyComponent),
            ("a/", UnsafePath::EmptyComponent),
            ("../a", UnsafePath::DotComponent),
            ("a/../../b", UnsafePath::DotComponent),
            ("./a", UnsafePath::DotComponent),
            ("a\0b", UnsafePath::ControlCharacter),
            ("a\nb", UnsafePath::ControlCharacter),
        ];
        for (p, want) in cases {
            assert_eq!(check_relative_path(p), Err(want), "{p:?}");
        }
    }

    #[test]
    fn streaming_digest_matches_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(digest_reader(&data[..]).unwrap(), digest_bytes(&data));
        assert_eq!(
            digest_bytes(b"").1,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
