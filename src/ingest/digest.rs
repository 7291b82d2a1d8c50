//! SHA-256 helpers: whole files (streamed) and single records.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// A SHA-256 digest held as 32 bytes and written as lowercase hex. Records
/// carry one each, so it is kept compact (a hex `String` would be three times
/// the size, per record, per collection of millions of records).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase or uppercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256Digest(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A digest from its raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Sha256Digest::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a SHA-256 hex digest")))
    }
}

impl PartialEq<&str> for Sha256Digest {
    fn eq(&self, other: &&str) -> bool {
        Sha256Digest::from_hex(other).is_some_and(|d| d == *self)
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A reader that hashes every byte read through it, so a file streamed for
/// parsing is hashed in the same pass: the digest covers exactly the bytes
/// that were parsed.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Reads what is left (so the digest covers the whole stream) and
    /// returns the size and lowercase hex SHA-256 of everything read.
    pub fn finish(mut self) -> std::io::Result<(u64, String)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((self.size, hex::encode(self.hasher.finalize())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// The size and lowercase hex SHA-256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    HashingReader::new(BufReader::with_capacity(1 << 16, File::open(path)?)).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_reader_covers_every_byte_read_and_the_rest() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = HashingReader::new(&data[..]);
        let mut head = [0u8; 1000];
        r.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[..1000]);
        // `finish` hashes what was read and what was left unread.
        assert_eq!(r.finish().unwrap(), (200_000, sha256_hex(&data)));
        let empty = HashingReader::new(&b""[..]).finish().unwrap();
        assert_eq!(empty, (0, sha256_hex(b"")));
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_digest_matches_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data = vec![7u8; 200_000];
        std::fs::write(&p, &data).unwrap();
        assert_eq!(file_sha256(&p).unwrap(), (200_000, sha256_hex(&data)));
    }
}
