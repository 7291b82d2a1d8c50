//! The evidence pack writer: collects files, writes them with their manifest
//! and signatures into a directory, atomically.
//!
//! Input: `(relative path, bytes)` pairs, or `(relative path, producer)` pairs
//! for files streamed at write time (see [`PackBuilder::add_streamed`]), the
//! collection's input digests, the assessment predicate, the `as_of` time and
//! a [`PrivateKey`]. Output: a pack directory:
//!
//! ```text
//! OUT/
//!   manifest.json          lists every other file (except the two below) with size + SHA-256
//!   manifest.sig           raw 64-byte Ed25519 signature over the bytes of manifest.json
//!   attestation.dsse.json  DSSE envelope of an in-toto Statement v1 over the same files
//!   ...                    the files added to the PackBuilder
//! ```
//!
//! # Signed bytes
//!
//! `manifest.sig` signs the bytes of `manifest.json` exactly as written: the
//! pretty-printed JSON described in [`super::manifest`] (field order `format`,
//! `tool`, `as_of`, `signer`, `inputs`, `files`; UTF-8; `\n` line ends; one
//! final `\n`). Nothing is canonicalised on either side: a verifier hashes and
//! checks the bytes it finds. The DSSE signature is described in
//! [`super::dsse`].
//!
//! # Atomicity and determinism
//!
//! Everything is written into a fresh temporary directory beside `OUT`
//! (same parent, so the final `rename` does not cross file systems), fsynced,
//! then renamed into place. On any error — a producer's included — the
//! temporary directory is removed and `OUT` is left as it was. With `overwrite`, an existing pack is moved
//! aside, the new one renamed in, and the old one removed.
//!
//! Same files + same options + same key give byte-identical packs: paths are
//! kept sorted, Ed25519 signatures are deterministic, and the only time in a
//! pack is the caller's `as_of`. A streamed file is the same as the bytes its
//! producer writes: its size and SHA-256 are taken from exactly the bytes that
//! reach the file.
//!
//! # Streaming and parallelism
//!
//! Files are written concurrently (on rayon's pool), each into its own file:
//! a file's bytes depend only on its bytes or its producer, and the manifest
//! lists them sorted by path, so the pack does not depend on the order in
//! which they finish. A streamed file never exists in memory whole: its
//! producer's output is cut into 1 MiB chunks and handed, in order, over a
//! bounded channel to a thread of its own that writes each chunk to the file
//! and hashes and counts exactly what the file accepted. Rendering, hashing
//! and the write system calls so overlap. Every 64 MiB a streamed file is
//! synced and its written pages are dropped from the page cache (on Linux):
//! a 4.5 GB JUnit file then passes through the same few tens of MiB of
//! cache instead of filling gigabytes of it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::dsse::{self, DsseError, Statement};
use super::keys::{KeyId, PrivateKey};
use super::manifest::{
    check_relative_path, digest_bytes, FileEntry, Manifest, ManifestError, Signer, Tool,
    UnsafePath, ENVELOPE_FILE, MANIFEST_FILE, MANIFEST_FORMAT, RESERVED_FILES, SIGNATURE_ALGORITHM,
    SIGNATURE_FILE,
};
use crate::ingest::model::InputFile;

/// Prefix of the temporary directory a pack is built in.
const TEMP_PREFIX: &str = ".syncproof-pack-";

/// Size of the chunks a producer's output is handed over in.
const STREAM_BUFFER: usize = 1 << 20;

/// Chunks that may wait between a producer and its file's writer thread:
/// bounds the memory a streamed file takes to a few MiB.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Bytes of a streamed file written between two write-behinds (see
/// [`WriteBehind`]).
const WRITE_BEHIND: u64 = 64 << 20;

/// Why a [`Producer`] failed.
pub type ProduceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Writes a streamed file's contents into the writer it is given, when the
/// pack is written (see [`PackBuilder::add_streamed`]).
pub type Producer<'a> = Box<dyn FnOnce(&mut dyn Write) -> Result<(), ProduceError> + Send + 'a>;

/// Errors from building or writing a pack.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PackError {
    /// A file path is not a safe relative path.
    #[error("pack file path `{path}` is unsafe: {reason}")]
    #[diagnostic(code(syncproof::pack::unsafe_path))]
    UnsafePath {
        /// The path.
        path: String,
        /// Why it is unsafe.
        reason: UnsafePath,
    },
    /// A file path is one of the three files the pack writes itself.
    #[error("pack file path `{path}` is reserved for the pack's own signature files")]
    #[diagnostic(code(syncproof::pack::reserved_path))]
    ReservedPath {
        /// The path.
        path: String,
    },
    /// A file path was added twice, or is both a file and a directory.
    #[error("pack file path `{path}` collides with `{other}`")]
    #[diagnostic(code(syncproof::pack::duplicate_path))]
    DuplicatePath {
        /// The path being added.
        path: String,
        /// The path already present.
        other: String,
    },
    /// An input's path is not a safe relative path.
    #[error("input path `{path}` is unsafe: {reason}")]
    #[diagnostic(code(syncproof::pack::unsafe_input))]
    UnsafeInput {
        /// The path.
        path: String,
        /// Why it is unsafe.
        reason: UnsafePath,
    },
    /// The output already exists and overwriting was not asked for.
    #[error("output `{}` already exists", path.display())]
    #[diagnostic(
        code(syncproof::pack::exists),
        help("pass `--force` to replace it, or choose another output directory")
    )]
    Exists {
        /// The output path.
        path: PathBuf,
    },
    /// The output exists and is not a directory, so it is not replaced.
    #[error("output `{}` exists and is not a directory", path.display())]
    #[diagnostic(code(syncproof::pack::not_a_directory))]
    NotADirectory {
        /// The output path.
        path: PathBuf,
    },
    /// A streamed file's producer failed.
    #[error("cannot write pack file `{path}`")]
    #[diagnostic(code(syncproof::pack::produce))]
    Produce {
        /// The file's path in the pack.
        path: String,
        /// The producer's error.
        #[source]
        source: ProduceError,
    },
    /// An I/O operation failed.
    #[error("cannot {action} `{}`", path.display())]
    #[diagnostic(code(syncproof::pack::io))]
    Io {
        /// What was being done (`create`, `write`, `rename`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The manifest could not be produced.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Manifest(#[from] ManifestError),
    /// The attestation could not be produced.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Dsse(#[from] DsseError),
}

/// Builds an [`PackError::Io`] mapper for `action` on `path`.
fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PackError + 'a {
    move |source| PackError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`PackBuilder::write`] needs besides the files and the key.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// Replace an existing pack at `out`.
    pub overwrite: bool,
    /// RFC 3339 time the assessment is as of (the only time in the pack).
    pub as_of: String,
    /// The syncproof version to record.
    pub tool_version: String,
    /// The collection files the assessment read (any order; sorted on write).
    pub inputs: Vec<InputFile>,
    /// The in-toto predicate (the assessment summary).
    pub predicate: serde_json::Value,
}

/// What a written pack is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackSummary {
    /// Where the pack is.
    pub path: PathBuf,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Number of files the manifest lists (the three signature files not counted).
    pub file_count: usize,
    /// Lowercase hex SHA-256 of `manifest.json`.
    pub manifest_sha256: String,
}

/// A file's contents: bytes in hand, or a producer run at write time.
enum Contents<'a> {
    /// The bytes.
    Bytes(Vec<u8>),
    /// Writes the bytes when the pack is written; the number says when it
    /// was added (streamed files are started in that order).
    Streamed(Producer<'a>, usize),
}

/// Collects the files of a pack, then writes it.
///
/// `'a` is how long the producers of streamed files may borrow (the data
/// they render from).
#[derive(Default)]
pub struct PackBuilder<'a> {
    /// Relative path to contents; sorted, so output order is deterministic.
    files: BTreeMap<String, Contents<'a>>,
    /// Streamed files added so far.
    streamed: usize,
    /// Test hook: fail after writing the files, before the rename.
    #[cfg(test)]
    fail_before_rename: bool,
}

impl fmt::Debug for PackBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.files.iter().map(|(path, contents)| {
                let what = match contents {
                    Contents::Bytes(b) => format!("{} bytes", b.len()),
                    Contents::Streamed(..) => "streamed".to_owned(),
                };
                (path, what)
            }))
            .finish()
    }
}

impl<'a> PackBuilder<'a> {
    /// An empty pack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file at `path` (relative, `/`-separated).
    ///
    /// Rejects unsafe paths, the reserved names `manifest.json`,
    /// `manifest.sig` and `attestation.dsse.json`, a path added twice, and a
    /// path that is also a directory of another (`a` and `a/b`).
    pub fn add(
        &mut self,
        path: impl Into<String>,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<(), PackError> {
        let path = path.into();
        self.check_new_path(&path)?;
        self.files.insert(path, Contents::Bytes(bytes.into()));
        Ok(())
    }

    /// Adds a file at `path` whose contents `produce` writes when the pack is
    /// written, straight into the file in the pack's temporary directory
    /// (through a buffer), so a large file is never held in memory. Its size
    /// and SHA-256 in the manifest are those of the bytes written. If
    /// `produce` fails, [`write`](Self::write) fails with
    /// [`PackError::Produce`] and leaves no pack behind.
    ///
    /// `produce` may run on another thread, concurrently with other
    /// producers. Streamed files are started in the order they were added,
    /// before the others: add the largest first. Paths are checked as by
    /// [`add`](Self::add).
    pub fn add_streamed<E>(
        &mut self,
        path: impl Into<String>,
        produce: impl FnOnce(&mut dyn Write) -> Result<(), E> + Send + 'a,
    ) -> Result<(), PackError>
    where
        E: Into<ProduceError>,
    {
        let path = path.into();
        self.check_new_path(&path)?;
        let produce: Producer<'a> = Box::new(move |out| produce(out).map_err(Into::into));
        self.files
            .insert(path, Contents::Streamed(produce, self.streamed));
        self.streamed += 1;
        Ok(())
    }

    /// Checks that `path` may be added: see [`add`](Self::add).
    fn check_new_path(&self, path: &str) -> Result<(), PackError> {
        check_relative_path(path).map_err(|reason| PackError::UnsafePath {
            path: path.to_owned(),
            reason,
        })?;
        if RESERVED_FILES.contains(&path) {
            return Err(PackError::ReservedPath {
                path: path.to_owned(),
            });
        }
        // The same path twice, or `a` vs `a/b`: one would have to be both a
        // file and a directory.
        let as_dir = format!("{path}/");
        if let Some(other) = self.files.keys().find(|k| {
            k.as_str() == path || k.starts_with(&as_dir) || path.starts_with(&format!("{k}/"))
        }) {
            return Err(PackError::DuplicatePath {
                other: other.clone(),
                path: path.to_owned(),
            });
        }
        Ok(())
    }

    /// Number of files added so far.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file has been added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes the pack to `out`, signed with `key`. See the module docs for
    /// the atomicity guarantees.
    pub fn write(
        self,
        out: &Path,
        options: PackOptions,
        key: &PrivateKey,
    ) -> Result<PackSummary, PackError> {
        let mut inputs = options.inputs;
        for input in &inputs {
            check_relative_path(&input.path).map_err(|reason| PackError::UnsafeInput {
                path: input.path.clone(),
                reason,
            })?;
        }
        inputs.sort();

        let existing = match fs::symlink_metadata(out) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("inspect", out)(e)),
        };
        if let Some(meta) = &existing {
            if !options.overwrite {
                return Err(PackError::Exists {
                    path: out.to_path_buf(),
                });
            }
            if !meta.is_dir() {
                return Err(PackError::NotADirectory {
                    path: out.to_path_buf(),
                });
            }
        }

        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // INVARIANT: from here on, `temp` is removed on drop unless kept.
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&parent)
            .map_err(io_err("create a temporary directory in", &parent))?;

        let mut dirs = vec![temp.path().to_path_buf()];
        for path in self.files.keys() {
            let target = temp.path().join(path);
            if let Some(dir) = target.parent() {
                if !dirs.iter().any(|d| d == dir) {
                    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
                    dirs.push(dir.to_path_buf());
                }
            }
        }
        // Each file on its own task (one may be far larger than the others).
        // Streamed files start first, in the order they were added, so a
        // caller adds the largest first: rayon starts the first task at
        // once, and the largest file is the phase's critical path (on W10,
        // the JUnit file's 4.5 GB, docs/performance.md). The manifest lists
        // the entries in path order whatever order they were written in.
        let mut files: Vec<(String, Contents<'a>)> = self.files.into_iter().collect();
        files.sort_by_key(|(_, contents)| match contents {
            Contents::Streamed(_, added) => (0, *added),
            Contents::Bytes(_) => (1, 0),
        });
        let mut entries = files
            .into_par_iter()
            .with_max_len(1)
            .map(|(path, contents)| {
                let target = temp.path().join(&path);
                let (size, sha256) = match contents {
                    Contents::Bytes(bytes) => {
                        write_synced(&target, &bytes)?;
                        digest_bytes(&bytes)
                    }
                    Contents::Streamed(produce, _) => write_streamed(&target, &path, produce)?,
                };
                Ok(FileEntry { path, size, sha256 })
            })
            .collect::<Result<Vec<_>, PackError>>()?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));

        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            tool: Tool {
                name: "syncproof".into(),
                version: options.tool_version,
            },
            as_of: options.as_of,
            signer: Signer {
                key_id: key.key_id().to_string(),
                algorithm: SIGNATURE_ALGORITHM.into(),
            },
            inputs,
            files: entries,
        };
        let manifest_bytes = manifest.to_bytes()?;
        let (_, manifest_sha256) = digest_bytes(&manifest_bytes);
        write_synced(&temp.path().join(MANIFEST_FILE), &manifest_bytes)?;
        write_synced(
            &temp.path().join(SIGNATURE_FILE),
            &key.sign(&manifest_bytes),
        )?;

        let subjects = std::iter::once((MANIFEST_FILE.to_string(), manifest_sha256.clone())).chain(
            manifest
                .files
                .iter()
                .map(|f| (f.path.clone(), f.sha256.clone())),
        );
        let statement = Statement::new(subjects, options.predicate);
        let envelope = dsse::sign_statement(&statement, key)?;
        write_synced(&temp.path().join(ENVELOPE_FILE), &envelope)?;

        // Deepest first, so each directory's entries are durable before it.
        for dir in dirs.iter().rev() {
            sync_dir(dir)?;
        }

        #[cfg(test)]
        if self.fail_before_rename {
            return Err(io_err("rename", out)(io::Error::other("injected failure")));
        }

        let built = temp.path().to_path_buf();
        if existing.is_some() {
            replace_dir(&built, out)?;
        } else {
            fs::rename(&built, out).map_err(io_err("rename into place", out))?;
        }
        // The temporary directory now lives at `out`; don't delete it.
        let _ = temp.keep();
        sync_dir(&parent)?;

        Ok(PackSummary {
            path: out.to_path_buf(),
            key_id: key.key_id().clone(),
            file_count: manifest.files.len(),
            manifest_sha256,
        })
    }
}

/// Moves the existing pack at `out` aside, renames `built` into place, then
/// removes the old pack. Restores the old pack if the second rename fails.
fn replace_dir(built: &Path, out: &Path) -> Result<(), PackError> {
    let mut aside = built.as_os_str().to_os_string();
    aside.push(".old");
    let aside = PathBuf::from(aside);
    fs::rename(out, &aside).map_err(io_err("move aside", out))?;
    if let Err(e) = fs::rename(built, out) {
        let _ = fs::rename(&aside, out);
        return Err(io_err("rename into place", out)(e));
    }
    // Best effort: the new pack is in place whether or not this succeeds.
    let _ = fs::remove_dir_all(&aside);
    Ok(())
}

/// Creates a new file, writes `bytes` and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PackError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))
}

/// Creates a new file, streams `produce`'s output into it and fsyncs it.
/// Returns the size and SHA-256 of the bytes that reached the file.
///
/// The producer runs on this thread and writes into a [`ChunkSender`]; a
/// second thread receives the chunks in order and writes them through a
/// [`DigestWriter`]. If that thread fails, the producer's next write fails
/// and the thread's I/O error is reported.
fn write_streamed(
    target: &Path,
    path: &str,
    produce: Producer<'_>,
) -> Result<(u64, String), PackError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(io_err("create", target))?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let (produced, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<(File, u64, String)> {
            let mut out = DigestWriter::new(WriteBehind::new(file));
            for chunk in rx {
                out.write_all(&chunk)?;
            }
            let (file, size, sha256) = out.finish();
            Ok((file.into_inner(), size, sha256))
        });
        let mut sink = ChunkSender {
            tx: Some(tx),
            chunk: Vec::with_capacity(STREAM_BUFFER),
        };
        let produced = produce(&mut sink).and_then(|()| Ok(sink.finish()?));
        // Hang up (if the producer failed), so the writer thread ends.
        drop(sink);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (produced, written)
    });
    let (file, size, sha256) = written.map_err(io_err("write", target))?;
    produced.map_err(|source| PackError::Produce {
        path: path.to_owned(),
        source,
    })?;
    file.sync_all().map_err(io_err("write", target))?;
    Ok((size, sha256))
}

/// The producer's end of a streamed file: collects writes into chunks of
/// [`STREAM_BUFFER`] bytes and sends each, in order, to the writer thread.
struct ChunkSender {
    /// Where full chunks go; `None` once finished.
    tx: Option<SyncSender<Vec<u8>>>,
    /// The chunk being filled.
    chunk: Vec<u8>,
}

impl ChunkSender {
    /// Sends the chunk being filled, if any.
    fn send(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(STREAM_BUFFER));
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("the stream is finished"))?
            .send(chunk)
            .map_err(|_| io::Error::other("the file's writer stopped"))
    }

    /// Sends what is left and hangs up.
    fn finish(&mut self) -> io::Result<()> {
        self.send()?;
        self.tx = None;
        Ok(())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = STREAM_BUFFER - self.chunk.len();
        let n = buf.len().min(room);
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() >= STREAM_BUFFER {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are sent when full or at the end; nothing to force here.
        Ok(())
    }
}

/// A file written front to back that, every [`WRITE_BEHIND`] bytes, syncs
/// what it holds and tells the kernel that the pages written are not needed
/// again (`posix_fadvise(POSIX_FADV_DONTNEED)`, on Linux; elsewhere it only
/// writes). The pack is fsynced in the end anyway, so this changes when its
/// bytes reach the disk, not whether: what it saves is the page cache. A
/// multi-gigabyte output otherwise takes as many gigabytes of fresh page
/// cache, evicting what the user had cached; and on a VM whose balloon
/// driver reports free memory to the host, memory not touched lately costs
/// a host fault per page on first use (`scripts/first-touch.sh`: ~0.5 GB/s
/// against ~5 GB/s for memory just freed). Dropped pages are clean (synced
/// first), so dropping them loses nothing; the advice is best effort.
struct WriteBehind {
    file: File,
    /// Bytes between two write-behinds.
    window: u64,
    /// Bytes written.
    written: u64,
    /// Bytes synced and dropped from the cache.
    dropped: u64,
}

impl WriteBehind {
    fn new(file: File) -> Self {
        WriteBehind::with_window(file, WRITE_BEHIND)
    }

    fn with_window(file: File, window: u64) -> Self {
        WriteBehind {
            file,
            window,
            written: 0,
            dropped: 0,
        }
    }

    /// The file back (not synced since the last write-behind).
    fn into_inner(self) -> File {
        self.file
    }

    /// Syncs the file and drops the pages written since the last time (on
    /// Linux; elsewhere only counts).
    fn write_behind(&mut self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.file.sync_data()?;
            if let Some(len) = std::num::NonZeroU64::new(self.written - self.dropped) {
                // Advice only: if it is not taken, the pages stay cached.
                let _ = rustix::fs::fadvise(
                    &self.file,
                    self.dropped,
                    Some(len),
                    rustix::fs::Advice::DontNeed,
                );
            }
        }
        self.dropped = self.written;
        Ok(())
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.dropped >= self.window {
            self.write_behind()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Passes writes on to `inner`, hashing and counting exactly the bytes
/// `inner` accepted.
struct DigestWriter<W> {
    /// Where the bytes go.
    inner: W,
    /// SHA-256 of the bytes written so far.
    hasher: Sha256,
    /// Bytes written so far.
    size: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The writer back, the size and the lowercase hex SHA-256 of what was
    /// written.
    fn finish(self) -> (W, u64, String) {
        (self.inner, self.size, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf
            .get(..n)
            .ok_or_else(|| io::Error::other("the writer reported more bytes than it was given"))?;
        self.hasher.update(written);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Fsyncs a directory so the names in it are durable (a no-op off Unix).
fn sync_dir(dir: &Path) -> Result<(), PackError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed test key.
    pub(crate) fn test_key() -> PrivateKey {
        PrivateKey::from_seed(&[42; 32]).unwrap()
    }

    /// Options with fixed values.
    pub(crate) fn test_options() -> PackOptions {
        PackOptions {
            overwrite: false,
            as_of: "2025-01-31T00:00:00Z".into(),
            tool_version: "0.0.0-test".into(),
            inputs: vec![
                InputFile {
                    path: "sync/b.jsonl".into(),
                    size: 2,
                    sha256: digest_bytes(b"b\n").1,
                    kind: "sync_log".into(),
                },
                InputFile {
                    path: "collection.yaml".into(),
                    size: 2,
                    sha256: digest_bytes(b"c\n").1,
                    kind: "manifest".into(),
                },
            ],
            predicate: serde_json::json!({"findings": 2, "verdict": "fail"}),
        }
    }

    /// A builder with a few files, one in a subdirectory.
    pub(crate) fn test_builder() -> PackBuilder<'static> {
        let mut b = PackBuilder::new();
        b.add("report.json", b"{\"ok\":true}\n".to_vec()).unwrap();
        b.add("report.md", b"# Report\n".to_vec()).unwrap();
        b.add("sarif/findings.sarif", b"{}".to_vec()).unwrap();
        b
    }

    /// Every file under `dir`, relative path to bytes.
    pub(crate) fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                (rel, fs::read(e.path()).unwrap())
            })
            .collect()
    }

    fn leftovers(parent: &Path) -> Vec<String> {
        fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn writes_manifest_signature_and_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        let key = test_key();
        let summary = test_builder().write(&out, test_options(), &key).unwrap();
        assert_eq!(summary.file_count, 3);
        assert_eq!(&summary.key_id, key.key_id());

        let tree = read_tree(&out);
        let names: Vec<&str> = tree.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "attestation.dsse.json",
                "manifest.json",
                "manifest.sig",
                "report.json",
                "report.md",
                "sarif/findings.sarif"
            ]
        );
        let manifest_bytes = &tree["manifest.json"];
        assert_eq!(digest_bytes(manifest_bytes).1, summary.manifest_sha256);
        let manifest = Manifest::from_bytes(manifest_bytes).unwrap();
        assert_eq!(manifest.signer.key_id, key.key_id().as_str());
        let input_paths: Vec<&str> = manifest.inputs.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(input_paths, ["collection.yaml", "sync/b.jsonl"]);
        assert_eq!(tree["manifest.sig"].len(), 64);
        assert_eq!(
            key.public_key()
                .verify(manifest_bytes, &tree["manifest.sig"]),
            Ok(())
        );
        let statement =
            dsse::verify_envelope(&tree["attestation.dsse.json"], &key.public_key()).unwrap();
        assert_eq!(statement.subject.len(), 4);
        assert_eq!(statement.subject[0].name, "manifest.json");
        assert_eq!(
            statement.subject[0].digest["sha256"],
            summary.manifest_sha256
        );
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn same_input_gives_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        test_builder()
            .write(&a, test_options(), &test_key())
            .unwrap();
        // Inputs in another order must not matter.
        let mut options = test_options();
        options.inputs.reverse();
        test_builder().write(&b, options, &test_key()).unwrap();
        assert_eq!(read_tree(&a), read_tree(&b));
    }

    #[test]
    fn refuses_to_overwrite_without_permission() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep.txt"), "old").unwrap();
        let err = test_builder()
            .write(&out, test_options(), &test_key())
            .unwrap_err();
        assert!(matches!(err, PackError::Exists { .. }), "{err}");
        assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn overwrite_replaces_the_old_pack() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("stale.txt"), "old").unwrap();
        let mut options = test_options();
        options.overwrite = true;
        test_builder().write(&out, options, &test_key()).unwrap();
        assert!(!out.join("stale.txt").exists());
        assert!(out.join("manifest.json").is_file());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pack"]);
    }

    #[test]
    fn overwrite_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        fs::write(&out, "a file").unwrap();
        let mut options = test_options();
        options.overwrite = true;
        let err = test_builder()
            .write(&out, options, &test_key())
            .unwrap_err();
        assert!(matches!(err, PackError::NotADirectory { .. }), "{err}");
        assert_eq!(fs::read_to_string(&out).unwrap(), "a file");
    }

    #[test]
    fn failure_leaves_nothing_at_out() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        let mut builder = test_builder();
        builder.fail_before_rename = true;
        assert!(builder.write(&out, test_options(), &test_key()).is_err());
        assert!(fs::symlink_metadata(&out).is_err());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn failure_with_overwrite_keeps_the_old_pack() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep.txt"), "old").unwrap();
        let mut builder = test_builder();
        builder.fail_before_rename = true;
        let mut options = test_options();
        options.overwrite = true;
        assert!(builder.write(&out, options, &test_key()).is_err());
        assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn parent_being_a_file_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("file");
        fs::write(&parent, "x").unwrap();
        let out = parent.join("pack");
        let err = test_builder()
            .write(&out, test_options(), &test_key())
            .unwrap_err();
        assert!(matches!(err, PackError::Io { .. }), "{err}");
        assert_eq!(fs::read_to_string(&parent).unwrap(), "x");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn unsafe_input_path_fails_before_touching_disk() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        let mut options = test_options();
        options.inputs[0].path = "../escape".into();
        let err = test_builder()
            .write(&out, options, &test_key())
            .unwrap_err();
        assert!(matches!(err, PackError::UnsafeInput { .. }), "{err}");
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn add_accepts_safe_paths() {
        let mut b = PackBuilder::new();
        for p in [
            "a.json",
            "dir/b.json",
            "dir/sub/c.json",
            "manifest.json.bak",
            "x/manifest.json",
        ] {
            b.add(p, b"x".to_vec()).unwrap();
        }
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn add_rejects_unsafe_reserved_and_colliding_paths() {
        let mut b = PackBuilder::new();
        b.add("dir/a", b"x".to_vec()).unwrap();
        for p in ["/abs", "../up", "a/../b", "a\\b", "a//b", "", "a/"] {
            assert!(
                matches!(b.add(p, vec![]), Err(PackError::UnsafePath { .. })),
                "{p:?}"
            );
        }
        for p in RESERVED_FILES {
            assert!(
                matches!(b.add(p, vec![]), Err(PackError::ReservedPath { .. })),
                "{p}"
            );
        }
        for p in ["dir/a", "dir", "dir/a/b"] {
            assert!(
                matches!(b.add(p, vec![]), Err(PackError::DuplicatePath { .. })),
                "{p}"
            );
        }
        assert_eq!(b.len(), 1);
    }

    /// `len` bytes that are not a repeating block (so a misplaced chunk
    /// changes the digest).
    fn patterned(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Writes `bytes` in chunks of awkward sizes, as a renderer would.
    fn chunked(bytes: &[u8], out: &mut dyn Write) -> io::Result<()> {
        for chunk in bytes.chunks(7919) {
            out.write_all(chunk)?;
        }
        Ok(())
    }

    #[test]
    fn streamed_file_is_listed_with_the_size_and_digest_of_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        // Larger than the stream buffer, and not a multiple of it.
        let data = patterned(3 * STREAM_BUFFER + 12_345);
        let mut b = test_builder();
        b.add_streamed("big/stream.xml", |w| chunked(&data, w))
            .unwrap();
        b.add_streamed("empty.txt", |_| Ok::<(), io::Error>(()))
            .unwrap();
        b.write(&out, test_options(), &test_key()).unwrap();

        let manifest = Manifest::from_bytes(&fs::read(out.join(MANIFEST_FILE)).unwrap()).unwrap();
        for (path, want) in [("big/stream.xml", &data[..]), ("empty.txt", &[][..])] {
            let entry = manifest.files.iter().find(|f| f.path == path).unwrap();
            let on_disk = super::super::manifest::digest_file(&out.join(path)).unwrap();
            assert_eq!((entry.size, entry.sha256.clone()), on_disk, "{path}");
            assert_eq!(on_disk, digest_bytes(want), "{path}");
        }
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "big/stream.xml",
                "empty.txt",
                "report.json",
                "report.md",
                "sarif/findings.sarif"
            ]
        );
    }

    #[test]
    fn streamed_and_buffered_files_give_identical_packs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let data = patterned(STREAM_BUFFER + 1);
        let mut buffered = test_builder();
        buffered.add("x/data.bin", data.clone()).unwrap();
        buffered.write(&a, test_options(), &test_key()).unwrap();
        let mut streamed = PackBuilder::new();
        streamed
            .add_streamed("report.json", |w| w.write_all(b"{\"ok\":true}\n"))
            .unwrap();
        streamed
            .add_streamed("report.md", |w| w.write_all(b"# Report\n"))
            .unwrap();
        streamed
            .add_streamed("sarif/findings.sarif", |w| w.write_all(b"{}"))
            .unwrap();
        streamed
            .add_streamed("x/data.bin", |w| chunked(&data, w))
            .unwrap();
        streamed.write(&b, test_options(), &test_key()).unwrap();
        assert_eq!(read_tree(&a), read_tree(&b));
    }

    /// Streamed files start in the order they were added, before the
    /// others (on one thread that order is exact), and the manifest still
    /// lists every file in path order.
    #[test]
    fn streamed_files_start_in_the_order_added_and_are_listed_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::sync::Mutex::new(Vec::new());
        let mut b = PackBuilder::new();
        b.add("report.json", b"{}".to_vec()).unwrap();
        b.add("sarif/findings.sarif", b"{}".to_vec()).unwrap();
        for name in ["z-largest.xml", "b.json", "m.md", "a.html"] {
            let started = &started;
            b.add_streamed(name, move |w| {
                started.lock().unwrap().push(name);
                w.write_all(name.as_bytes())
            })
            .unwrap();
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let out = dir.path().join("pack");
        pool.install(|| b.write(&out, test_options(), &test_key()))
            .unwrap();
        assert_eq!(
            *started.lock().unwrap(),
            ["z-largest.xml", "b.json", "m.md", "a.html"]
        );
        let manifest = Manifest::from_bytes(&fs::read(out.join(MANIFEST_FILE)).unwrap()).unwrap();
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted);
        assert!(
            paths.contains(&"z-largest.xml") && paths.len() > 4,
            "{paths:?}"
        );
    }

    #[test]
    fn failing_producer_leaves_no_pack_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        let data = patterned(2 * STREAM_BUFFER);
        let mut b = test_builder();
        b.add_streamed("report.xml", |w| {
            chunked(&data, w)?;
            Err(io::Error::other("renderer failed half way"))
        })
        .unwrap();
        let err = b.write(&out, test_options(), &test_key()).unwrap_err();
        assert!(
            matches!(&err, PackError::Produce { path, .. } if path == "report.xml"),
            "{err}"
        );
        assert!(fs::symlink_metadata(&out).is_err());
        assert!(leftovers(dir.path()).is_empty());
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn failing_producer_with_overwrite_keeps_the_old_pack() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        test_builder()
            .write(&out, test_options(), &test_key())
            .unwrap();
        let before = read_tree(&out);
        let mut b = test_builder();
        b.add_streamed("report.xml", |w| {
            w.write_all(b"<partial")?;
            Err(io::Error::other("renderer failed"))
        })
        .unwrap();
        let mut options = test_options();
        options.overwrite = true;
        assert!(b.write(&out, options, &test_key()).is_err());
        assert_eq!(read_tree(&out), before);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn streamed_pack_verifies_and_tampering_is_caught() {
        use crate::evidence::verify::verify;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pack");
        let data = patterned(2 * STREAM_BUFFER + 3);
        let mut b = test_builder();
        b.add_streamed("findings.junit.xml", |w| chunked(&data, w))
            .unwrap();
        let key = test_key();
        b.write(&out, test_options(), &key).unwrap();
        let verified = verify(&out, &key.public_key(), None).unwrap();
        assert_eq!(verified.file_count(), 4);

        let path = out.join("findings.junit.xml");
        // One flipped bit in the middle.
        let mut changed = data.clone();
        changed[STREAM_BUFFER] ^= 1;
        fs::write(&path, &changed).unwrap();
        assert!(verify(&out, &key.public_key(), None).is_err());
        // Truncated.
        fs::write(&path, &data[..data.len() - 1]).unwrap();
        assert!(verify(&out, &key.public_key(), None).is_err());
        // Restored.
        fs::write(&path, &data).unwrap();
        assert!(verify(&out, &key.public_key(), None).is_ok());
    }

    #[test]
    fn add_streamed_checks_paths_like_add() {
        let mut b = PackBuilder::new();
        b.add("dir/a", b"x".to_vec()).unwrap();
        let ok = |_: &mut dyn Write| Ok::<(), io::Error>(());
        assert!(matches!(
            b.add_streamed("../up", ok),
            Err(PackError::UnsafePath { .. })
        ));
        assert!(matches!(
            b.add_streamed(MANIFEST_FILE, ok),
            Err(PackError::ReservedPath { .. })
        ));
        for p in ["dir/a", "dir", "dir/a/b"] {
            assert!(
                matches!(b.add_streamed(p, ok), Err(PackError::DuplicatePath { .. })),
                "{p}"
            );
        }
        b.add_streamed("dir/b", ok).unwrap();
        assert!(matches!(
            b.add("dir/b", vec![]),
            Err(PackError::DuplicatePath { .. })
        ));
        assert_eq!(b.len(), 2);
    }

    /// A writer that accepts at most 5 bytes per call.
    struct Short(Vec<u8>);

    impl Write for Short {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_behind_keeps_every_byte_across_many_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = patterned(10_000);
        let mut w = WriteBehind::with_window(File::create(&path).unwrap(), 97);
        // Uneven pieces, so that windows end inside writes and between them.
        let mut rest = &data[..];
        for n in [1, 96, 97, 98, 500, 3].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, more) = rest.split_at((*n).min(rest.len()));
            w.write_all(piece).unwrap();
            rest = more;
        }
        assert_eq!(w.written, data.len() as u64);
        // Everything but the last window's worth was synced and dropped.
        assert!(w.dropped > 0 && w.written - w.dropped < 97);
        w.into_inner().sync_all().unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    #[test]
    fn write_behind_under_the_window_only_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        w.write_all(b"small").unwrap();
        assert_eq!((w.written, w.dropped), (5, 0));
        drop(w.into_inner());
        assert_eq!(fs::read(&path).unwrap(), b"small");
    }

    #[test]
    fn digest_writer_hashes_exactly_what_was_accepted() {
        let data = patterned(1000);
        let mut w = DigestWriter::new(Short(Vec::new()));
        assert_eq!(w.write(&data).unwrap(), 5);
        w.write_all(&data[5..]).unwrap();
        let (inner, size, sha256) = w.finish();
        assert_eq!(inner.0, data);
        assert_eq!((size, sha256), digest_bytes(&data));
    }
}
