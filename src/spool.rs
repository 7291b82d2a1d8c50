//! An append-only scratch space for records too many to hold (the sync
//! log's changes, the subjects `attest` lists): an unnamed
//! temporary file (gone when the run ends, even if it is killed), or memory
//! when no temporary file can be made. The results do not depend on which.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Bytes buffered before they are written out.
const BUFFER: usize = 256 * 1024;

/// Bytes each bucket of [`Buckets`] buffers: there can be hundreds of them
/// (the sync-log buckets), and 512 buffers of [`BUFFER`] (which a record
/// crossing it doubles) were 0.2 GiB of W10's peak.
const BUCKET_BUFFER: usize = 32 * 1024;

enum Backing {
    File(File),
    Memory(Vec<u8>),
}

/// Append-only bytes: appended through a buffer, read back by position once
/// [`Spool::flush`]ed.
pub(crate) struct Spool {
    backing: Backing,
    /// Bytes appended so far (written and buffered).
    len: u64,
    buffer: Vec<u8>,
    /// The buffer is written out once it holds this many bytes.
    limit: usize,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::File(_) => "file",
            Backing::Memory(_) => "memory",
        };
        write!(f, "Spool({kind}, {} bytes)", self.len)
    }
}

impl Spool {
    /// A spool on an unnamed temporary file, or in memory if none can be
    /// made.
    pub(crate) fn new() -> Self {
        Spool::with_backing(match tempfile::tempfile() {
            Ok(f) => Backing::File(f),
            Err(_) => Backing::Memory(Vec::new()),
        })
    }

    /// A spool in memory.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Self {
        Spool::with_backing(Backing::Memory(Vec::new()))
    }

    fn with_backing(backing: Backing) -> Self {
        Spool {
            backing,
            len: 0,
            buffer: Vec::new(),
            limit: BUFFER,
        }
    }

    /// A spool like [`Spool::new`] that buffers only `limit` bytes.
    fn with_limit(limit: usize) -> Self {
        Spool {
            limit,
            ..Spool::new()
        }
    }

    /// The buffer to append a record to: [`Spool::commit`] then counts what
    /// was added and writes the buffer out when it is full.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    /// Counts the bytes added to [`Spool::buffer`] since `before` (its length
    /// then), and writes the buffer out once it is full.
    pub(crate) fn commit(&mut self, before: usize) -> io::Result<()> {
        self.len += (self.buffer.len() - before) as u64;
        if self.buffer.len() >= self.limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends `bytes`; returns where they start.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let at = self.len;
        let before = self.buffer.len();
        self.buffer.extend_from_slice(bytes);
        self.commit(before)?;
        Ok(at)
    }

    /// Writes out what is buffered.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match &mut self.backing {
            Backing::File(f) => {
                // Positioned reads may have moved the cursor (on Windows).
                f.seek(SeekFrom::End(0))?;
                f.write_all(&self.buffer)?;
            }
            Backing::Memory(m) => m.extend_from_slice(&self.buffer),
        }
        self.buffer.clear();
        Ok(())
    }

    /// The `len` bytes at `offset`, which must have been flushed.
    pub(crate) fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        io::Read::read_exact(&mut self.reader(offset, len as u64), &mut out)?;
        Ok(out)
    }

    /// The `len` bytes at `offset`, which must have been flushed, as a
    /// stream (positioned reads: several may read side by side). Reading
    /// past the end of the spool is an error.
    pub(crate) fn reader(&self, offset: u64, len: u64) -> SpoolReader<'_> {
        SpoolReader {
            spool: self,
            at: offset,
            end: offset.saturating_add(len),
        }
    }

    /// Everything appended, which must have been flushed.
    pub(crate) fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len).map_err(|_| out_of_range())?;
        self.read_at(0, len)
    }
}

/// Records spread over a fixed number of spools ("buckets"), each made
/// when first written to, so that each can later be read back and worked
/// through on its own. A failed write stops all further writes; the error is
/// reported by [`Buckets::into_spools`].
#[derive(Debug)]
pub(crate) struct Buckets {
    spools: Vec<Option<Spool>>,
    error: Option<io::Error>,
}

impl Buckets {
    /// `count` empty buckets.
    pub(crate) fn new(count: usize) -> Self {
        Buckets {
            spools: (0..count).map(|_| None).collect(),
            error: None,
        }
    }

    /// Appends to bucket `bucket` (modulo the count) the record `write` puts
    /// in the buffer it is given. Once a write has failed, nothing more is
    /// written.
    pub(crate) fn append(
        &mut self,
        bucket: usize,
        write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) {
        if self.error.is_some() || self.spools.is_empty() {
            return;
        }
        let count = self.spools.len();
        let spool =
            self.spools[bucket % count].get_or_insert_with(|| Spool::with_limit(BUCKET_BUFFER));
        let before = spool.buffer().len();
        let written = match write(spool.buffer()) {
            Ok(()) => spool.commit(before),
            Err(e) => {
                spool.buffer().truncate(before);
                Err(e)
            }
        };
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    /// The buckets written to, in bucket order, flushed; or the first write
    /// error.
    pub(crate) fn into_spools(self) -> io::Result<Vec<Spool>> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out: Vec<Spool> = self.spools.into_iter().flatten().collect();
        for spool in &mut out {
            spool.flush()?;
        }
        Ok(out)
    }
}

/// A range of a [`Spool`], read as a stream; see [`Spool::reader`].
pub(crate) struct SpoolReader<'a> {
    spool: &'a Spool,
    /// Where the next read starts.
    at: u64,
    /// Where the range ends.
    end: u64,
}

impl io::Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..want];
        let n = match &self.spool.backing {
            Backing::File(f) => read_at(f, buf, self.at)?,
            Backing::Memory(m) => {
                let start = usize::try_from(self.at).map_err(|_| out_of_range())?;
                let bytes = m.get(start..).unwrap_or_default();
                let n = bytes.len().min(want);
                buf[..n].copy_from_slice(&bytes[..n]);
                n
            }
        };
        if n == 0 {
            // The range runs past what was written.
            return Err(out_of_range());
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// Reads up to `buf.len()` bytes at `offset`, without a lock.
#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, offset)
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a record lies outside the temporary file",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn buckets_keep_each_record_in_its_bucket_and_stop_at_a_failed_write() {
        let mut b = Buckets::new(4);
        for (bucket, record) in [(1, "a"), (6, "b"), (1, "c"), (3, "d")] {
            b.append(bucket, |out| {
                out.extend_from_slice(record.as_bytes());
                Ok(())
            });
        }
        // Bucket 0 is never written to: only those written come back.
        let spools = b.into_spools().unwrap();
        let contents: Vec<Vec<u8>> = spools.iter().map(|s| s.read_all().unwrap()).collect();
        assert_eq!(contents, [b"ac".to_vec(), b"b".to_vec(), b"d".to_vec()]);

        let mut b = Buckets::new(2);
        b.append(0, |out| {
            out.extend_from_slice(b"kept");
            Ok(())
        });
        b.append(1, |out| {
            out.extend_from_slice(b"half a rec");
            Err(io::Error::other("cannot encode"))
        });
        let mut later = false;
        b.append(0, |_| {
            later = true;
            Ok(())
        });
        assert!(!later, "nothing is written after a failed write");
        let err = b.into_spools().unwrap_err();
        assert_eq!(err.to_string(), "cannot encode");
    }

    #[test]
    fn file_and_memory_read_back_what_was_appended() {
        for mut s in [Spool::new(), Spool::in_memory()] {
            let a = s.append(b"hello ").unwrap();
            let big = vec![7u8; BUFFER + 10];
            let b = s.append(&big).unwrap();
            let c = s.append(b"world").unwrap();
            s.flush().unwrap();
            assert_eq!((a, b, c), (0, 6, 6 + big.len() as u64));
            assert_eq!(s.read_at(c, 5).unwrap(), b"world");
            assert_eq!(s.read_at(a, 6).unwrap(), b"hello ");
            assert_eq!(s.read_at(b, big.len()).unwrap(), big);
            // Appending after a read still appends.
            let d = s.append(b"!").unwrap();
            s.flush().unwrap();
            assert_eq!(s.read_at(d, 1).unwrap(), b"!");
            let all = s.read_all().unwrap();
            assert_eq!(all.len(), 11 + big.len() + 1);
            assert!(all.ends_with(b"world!"));
            // Past the end is an error, not a panic.
            assert!(s.read_at(all.len() as u64, 1).is_err());
            // A range read as a stream, in small and large reads.
            let mut streamed = Vec::new();
            s.reader(b, big.len() as u64 + 5)
                .read_to_end(&mut streamed)
                .unwrap();
            assert_eq!(&streamed[..big.len()], &big[..]);
            assert_eq!(&streamed[big.len()..], b"world");
            let mut three = [0u8; 3];
            let mut r = s.reader(c, 5);
            r.read_exact(&mut three).unwrap();
            assert_eq!(&three, b"wor");
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"ld");
            // A range past the end is an error when it gets there.
            let mut past = Vec::new();
            assert!(s.reader(d, 2).read_to_end(&mut past).is_err());
            assert_eq!(past, b"!");
        }
    }
}
