//! Ed25519 signing keys: generating, loading and storing them, and the key id.
//!
//! Input: PEM files (PKCS#8 `-----BEGIN PRIVATE KEY-----` for the private key,
//! SPKI `-----BEGIN PUBLIC KEY-----` for the public key). Output: a
//! [`PrivateKey`] that signs and a [`PublicKey`] that verifies.
//!
//! # Key id
//!
//! A key id is the lowercase hex SHA-256 of the public key's DER-encoded
//! `SubjectPublicKeyInfo` (RFC 8410: the 44 bytes that the base64 text of a
//! `-----BEGIN PUBLIC KEY-----` PEM file decodes to). An auditor can compute it
//! without syncproof:
//!
//! ```text
//! openssl pkey -pubin -in syncproof.pub.pem -outform DER | sha256sum
//! ```
//!
//! # Handling of secrets
//!
//! Private key bytes never appear in `Debug` output, error messages or logs.
//! PEM text is held in [`Zeroizing`] buffers and the signing key zeroizes itself
//! on drop. On Unix, a private key file that group or others may read or write
//! is refused, and [`keygen`] creates the file with mode `0600` in the same
//! system call that creates it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// File name of the private key that [`keygen`] writes.
pub const PRIVATE_KEY_FILE: &str = "syncproof.key.pem";
/// File name of the public key that [`keygen`] writes.
pub const PUBLIC_KEY_FILE: &str = "syncproof.pub.pem";

/// The largest key file we read; real PEM keys are a few hundred bytes.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Errors from loading, parsing or writing keys.
///
/// No variant ever carries key bytes or file contents.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read key file `{path}`")]
    #[diagnostic(code(syncproof::keys::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A private key file is readable or writable by group or others.
    #[error("private key file `{path}` has mode {mode:04o}, which lets group or others access it")]
    #[diagnostic(
        code(syncproof::keys::permissions),
        help("restrict it to its owner: `chmod 600 {}`", path.display())
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A private key file is not a PKCS#8 PEM Ed25519 key.
    #[error("`{path}` is not a PKCS#8 PEM Ed25519 private key")]
    #[diagnostic(
        code(syncproof::keys::invalid_private),
        help("expected a `-----BEGIN PRIVATE KEY-----` file as written by `syncproof keygen`")
    )]
    InvalidPrivateKey {
        /// The file (or `<input>` for text that came from memory).
        path: PathBuf,
    },
    /// A public key file is not an SPKI PEM Ed25519 key.
    #[error("`{path}` is not an SPKI PEM Ed25519 public key")]
    #[diagnostic(
        code(syncproof::keys::invalid_public),
        help("expected a `-----BEGIN PUBLIC KEY-----` file as written by `syncproof keygen`")
    )]
    InvalidPublicKey {
        /// The file (or `<input>` for text that came from memory).
        path: PathBuf,
    },
    /// A key file that `keygen` would write already exists.
    #[error("key file `{path}` already exists")]
    #[diagnostic(
        code(syncproof::keys::exists),
        help("keygen never overwrites keys; choose another `--out` directory or move the old keys away")
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Writing a key file or creating its directory failed.
    #[error("cannot write `{path}`")]
    #[diagnostic(code(syncproof::keys::write))]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Encoding a key as PEM failed (not expected for valid keys).
    #[error("cannot encode the {what} key as PEM")]
    #[diagnostic(code(syncproof::keys::encode))]
    Encode {
        /// `private` or `public`.
        what: &'static str,
    },
}

/// A key id: lowercase hex SHA-256 of the public key's SPKI DER.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The id as a 64-character lowercase hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Computes the id of a verifying key.
    fn of(key: &VerifyingKey) -> Result<Self, KeyError> {
        let der = key
            .to_public_key_der()
            .map_err(|_| KeyError::Encode { what: "public" })?;
        Ok(KeyId(hex::encode(Sha256::digest(der.as_bytes()))))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ed25519 private (signing) key. Its `Debug` output is redacted.
pub struct PrivateKey {
    /// The key; zeroized on drop by ed25519-dalek's `zeroize` feature.
    signing: SigningKey,
    /// The id of the matching public key.
    key_id: KeyId,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<redacted>, key id {})", self.key_id)
    }
}

impl PrivateKey {
    /// Generates a new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        Self::from_signing_key(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Wraps a signing key, computing its key id.
    fn from_signing_key(signing: SigningKey) -> Result<Self, KeyError> {
        let key_id = KeyId::of(&signing.verifying_key())?;
        Ok(Self { signing, key_id })
    }

    /// Builds a key from a 32-byte Ed25519 seed (for tests and fixtures).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// Parses PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// The error names `<input>`; it never echoes the text.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        Self::parse_pem(pem, Path::new("<input>"))
    }

    /// Parses PEM text, naming `path` in the error.
    fn parse_pem(pem: &str, path: &Path) -> Result<Self, KeyError> {
        let signing =
            SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| KeyError::InvalidPrivateKey {
                path: path.to_path_buf(),
            })?;
        Self::from_signing_key(signing)
    }

    /// Reads a PKCS#8 PEM private key file.
    ///
    /// On Unix, refuses a file whose mode grants any access to group or others
    /// (`mode & 0o077 != 0`). The mode is read from the opened file, not the
    /// path, so the check and the read see the same file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        check_private_mode(path, &meta)?;
        if !meta.is_file() || meta.len() > MAX_KEY_FILE {
            return Err(KeyError::InvalidPrivateKey {
                path: path.to_path_buf(),
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                KeyError::InvalidPrivateKey {
                    path: path.to_path_buf(),
                }
            } else {
                read_err(e)
            }
        })?;
        Self::parse_pem(&text, path)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            verifying: self.signing.verifying_key(),
            key_id: self.key_id.clone(),
        }
    }

    /// The id of the matching public key.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Signs `message` (pure Ed25519, RFC 8032; deterministic).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Encodes the key as PKCS#8 v1 PEM (no embedded public key, the form
    /// `openssl genpkey -algorithm ed25519` writes).
    fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Encode { what: "private" })
    }
}

/// Refuses private key files that group or others can access (Unix only).
#[cfg(unix)]
fn check_private_mode(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Permission bits are not checked on platforms without Unix modes.
#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _meta: &fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

/// An Ed25519 public (verifying) key and its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key.
    verifying: VerifyingKey,
    /// Its id.
    key_id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(key id {})", self.key_id)
    }
}

/// A signature did not verify. Deliberately carries no detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify with the given public key")]
pub struct BadSignature;

impl PublicKey {
    /// Reads an SPKI PEM public key file (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    KeyError::InvalidPublicKey {
                        path: path.to_path_buf(),
                    }
                } else {
                    read_err(e)
                }
            })?;
        Self::parse_pem(&text, path)
    }

    /// Parses SPKI PEM text (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem_str(pem: &str) -> Result<Self, KeyError> {
        Self::parse_pem(pem, Path::new("<input>"))
    }

    /// Parses PEM text, naming `path` in the error.
    fn parse_pem(pem: &str, path: &Path) -> Result<Self, KeyError> {
        let verifying = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| {
            KeyError::InvalidPublicKey {
                path: path.to_path_buf(),
            }
        })?;
        let key_id = KeyId::of(&verifying)?;
        Ok(Self { verifying, key_id })
    }

    /// Encodes the key as SPKI PEM with `\n` line endings.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.verifying
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyError::Encode { what: "public" })
    }

    /// The key id: lowercase hex SHA-256 of the SPKI DER encoding.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Verifies an Ed25519 signature over `message`.
    ///
    /// Uses strict verification (rejects non-canonical signatures and weak
    /// keys). A signature of the wrong length is simply a bad signature.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        let sig = Signature::from_slice(signature).map_err(|_| BadSignature)?;
        self.verifying
            .verify_strict(message, &sig)
            .map_err(|_| BadSignature)
    }
}

/// Where [`keygen`] wrote a new key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPairFiles {
    /// The new key's id.
    pub key_id: KeyId,
    /// The PKCS#8 PEM private key (mode `0600` on Unix).
    pub private_key: PathBuf,
    /// The SPKI PEM public key.
    pub public_key: PathBuf,
}

/// Generates a key pair and writes it into `dir` as [`PRIVATE_KEY_FILE`] and
/// [`PUBLIC_KEY_FILE`], creating `dir` if needed.
///
/// Never overwrites: if either file exists, nothing is written. The private
/// key file is created with `O_CREAT|O_EXCL` and mode `0600` in one step.
pub fn keygen(dir: &Path) -> Result<KeyPairFiles, KeyError> {
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    for path in [&private_path, &public_path] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let key = PrivateKey::generate()?;
    let private_pem = key.to_pkcs8_pem()?;
    let public_pem = key.public_key().to_pem()?;

    write_new(&private_path, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public_path, public_pem.as_bytes(), 0o644) {
        // Don't leave half a key pair behind.
        let _ = fs::remove_file(&private_path);
        return Err(e);
    }
    Ok(KeyPairFiles {
        key_id: key.key_id().clone(),
        private_key: private_path,
        public_key: public_path,
    })
}

/// Creates `path` (failing if it exists) with `mode` on Unix, writes `bytes`
/// and syncs it to disk.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let result = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(source) = result {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(KeyError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = PrivateKey::from_seed(&[7; 32]).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.starts_with("PrivateKey(<redacted>, key id "));
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(!debug.contains(pem.as_str()));
        assert!(!debug.contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn pem_round_trip_and_key_id_is_sha256_of_spki_der() {
        let key = PrivateKey::from_seed(&[1; 32]).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = PrivateKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.key_id(), key.key_id());

        let public_pem = key.public_key().to_pem().unwrap();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let public = PublicKey::from_pem_str(&public_pem).unwrap();
        assert_eq!(public, key.public_key());

        let der = key.public_key().verifying.to_public_key_der().unwrap();
        assert_eq!(der.as_bytes().len(), 44);
        assert_eq!(
            public.key_id().as_str(),
            hex::encode(Sha256::digest(der.as_bytes()))
        );
    }

    #[test]
    fn sign_verify_and_wrong_key_or_message_fails() {
        let key = PrivateKey::from_seed(&[2; 32]).unwrap();
        let other = PrivateKey::from_seed(&[3; 32]).unwrap();
        let sig = key.sign(b"hello");
        assert_eq!(key.public_key().verify(b"hello", &sig), Ok(()));
        assert_eq!(key.public_key().verify(b"hellO", &sig), Err(BadSignature));
        assert_eq!(other.public_key().verify(b"hello", &sig), Err(BadSignature));
    }

    #[test]
    fn malformed_signature_lengths_are_bad_not_panics() {
        let key = PrivateKey::from_seed(&[2; 32]).unwrap().public_key();
        for len in [0, 1, 63, 65, 128] {
            assert_eq!(key.verify(b"x", &vec![0; len]), Err(BadSignature));
        }
    }

    #[test]
    fn invalid_pem_is_an_error_that_does_not_echo_input() {
        let err =
            PublicKey::from_pem_str("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .unwrap_err();
        assert!(matches!(err, KeyError::InvalidPublicKey { .. }));
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IHNlY3JldA==\n-----END PRIVATE KEY-----";
        let err = PrivateKey::from_pkcs8_pem(secret).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        // A public key is not a private key and vice versa.
        let key = PrivateKey::from_seed(&[4; 32]).unwrap();
        let public_pem = key.public_key().to_pem().unwrap();
        assert!(PrivateKey::from_pkcs8_pem(&public_pem).is_err());
        assert!(PublicKey::from_pem_str(&key.to_pkcs8_pem().unwrap()).is_err());
    }

    #[test]
    fn keygen_writes_both_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/keys");
        let files = keygen(&out).unwrap();
        let key = PrivateKey::from_pem_file(&files.private_key).unwrap();
        let public = PublicKey::from_pem_file(&files.public_key).unwrap();
        assert_eq!(key.key_id(), &files.key_id);
        assert_eq!(public.key_id(), &files.key_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&files.private_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = fs::read(&files.private_key).unwrap();
        assert!(matches!(keygen(&out), Err(KeyError::Exists { .. })));
        assert_eq!(fs::read(&files.private_key).unwrap(), before);

        // Only the public key present: still refused, private key not created.
        let only_pub = dir.path().join("only-pub");
        fs::create_dir(&only_pub).unwrap();
        fs::write(only_pub.join(PUBLIC_KEY_FILE), "x").unwrap();
        assert!(matches!(keygen(&only_pub), Err(KeyError::Exists { .. })));
        assert!(!only_pub.join(PRIVATE_KEY_FILE).exists());
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_accessible_private_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = keygen(dir.path()).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            fs::set_permissions(&files.private_key, fs::Permissions::from_mode(mode)).unwrap();
            let err = PrivateKey::from_pem_file(&files.private_key).unwrap_err();
            assert!(matches!(err, KeyError::Permissions { .. }), "{mode:o}");
            let text = err.to_string();
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            assert!(text.contains(PRIVATE_KEY_FILE), "{text}");
        }
        for mode in [0o600, 0o400] {
            fs::set_permissions(&files.private_key, fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                PrivateKey::from_pem_file(&files.private_key).is_ok(),
                "{mode:o}"
            );
        }
    }
}
