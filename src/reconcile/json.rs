//! The reconciled state as JSON, written while it is produced, so that
//! `syncproof reconcile --format json` holds one application's access at a
//! time instead of the whole collection's (on a collection of 10 M events
//! the whole state, and its text beside it, did not fit in 24 GiB).
//!
//! The bytes are exactly serde_json's pretty form of the [`Reconciled`](super::Reconciled) that
//! [`crate::reconcile::load_and_run`] gives, and a newline (a test checks
//! it). They are made in two steps:
//!
//! 1. Every application is reconciled (in parallel), and its grants,
//!    assignments and accounts are serialised at once, as items of a list
//!    that is a field of the top-level object, to a temporary file; only the
//!    application's drift and snapshot figures are kept.
//! 2. The rest of the state — a [`Reconciled`](super::Reconciled) whose changes, grants,
//!    assignments and accounts are empty — is serialised by serde_json, and
//!    each of those four empty lists is written in place as the serialiser
//!    reaches it: the changes read back from the change store one at a time,
//!    in request order, the other three copied from the temporary file in
//!    application order.

use std::io::{self, Write};
use std::sync::Mutex;

use serde::Serialize;

use super::{lifecycle::ChangeStore, AppAccess, Prepared};
use crate::ingest::IngestError;
use crate::spool::Spool;

/// The four lists written in place, as their empty forms appear in
/// serde_json's pretty output of a [`Reconciled`](super::Reconciled), in the order it writes
/// them. Only a key of the top-level object starts a line indented by
/// exactly two spaces (deeper keys and items are indented further, and a
/// JSON string holds no raw line break), so each marker occurs once.
const LISTS: [&[u8]; 4] = [
    b"\n  \"changes\": []",
    b"\n  \"grants\": []",
    b"\n  \"assignments\": []",
    b"\n  \"accounts\": []",
];

/// Bytes of serde_json's output held before they are searched for the next
/// marker and passed on.
const HOLD: usize = 64 * 1024;

/// Why the reconciled state could not be written.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum JsonError {
    /// The collection could not be reconciled.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Reconcile(#[from] IngestError),
    /// Writing the output, or reading back the temporary files, failed.
    #[error("cannot write the reconciled state: {source}")]
    #[diagnostic(code(syncproof::reconcile::write))]
    Write {
        /// The I/O error.
        source: io::Error,
    },
}

/// Where one application's items of one list are in the temporary file.
#[derive(Clone, Copy, Debug, Default)]
struct Piece {
    offset: u64,
    len: u64,
}

impl Prepared {
    /// Reconciles every application and writes the reconciled state to
    /// `out` as pretty JSON and a newline: the bytes of
    /// `serde_json::to_string_pretty` of what
    /// [`crate::reconcile::load_and_run`] gives, and a newline. See the
    /// module docs for how. Nothing is written before every application is
    /// reconciled, so a collection that does not reconcile writes nothing.
    pub fn write_json(self, out: &mut dyn Write) -> Result<(), JsonError> {
        let spool = Mutex::new(Spool::new());
        let (apps, digests) = self.reconcile_apps(|mut access, _| {
            let pieces = [
                spool_items(&access.grants, &spool)?,
                spool_items(&access.assignments, &spool)?,
                spool_items(&access.accounts, &spool)?,
            ];
            access.grants = Vec::new();
            access.assignments = Vec::new();
            access.accounts = Vec::new();
            Ok::<_, io::Error>((access, pieces))
        })?;
        let mut kept = apps
            .into_iter()
            .collect::<io::Result<Vec<(AppAccess, [Piece; 3])>>>()
            .map_err(scratch_error)?;
        kept.sort_by(|a, b| a.0.snapshot.application.cmp(&b.0.snapshot.application));
        let (access, pieces): (Vec<AppAccess>, Vec<[Piece; 3]>) = kept.into_iter().unzip();
        let mut spool = spool
            .into_inner()
            .map_err(|_| scratch_error(io::Error::other("a worker failed")))?;
        spool.flush().map_err(scratch_error)?;
        let (facts, changes) = self.finish_keeping_changes(digests, access)?;

        let written = (|| {
            let mut fill = |list: usize, out: &mut dyn Write| match list {
                0 => write_changes(&changes, out),
                k => write_pieces(&spool, pieces.iter().map(|p| p[k - 1]), out),
            };
            let mut splice = Splice {
                out: &mut *out,
                held: Vec::with_capacity(HOLD + 1024),
                next: 0,
                fill: &mut fill,
            };
            serde_json::to_writer_pretty(&mut splice, &facts)?;
            splice.finish()?;
            out.write_all(b"\n")?;
            out.flush()
        })();
        written.map_err(|source| JsonError::Write { source })
    }
}

/// An error of the temporary file of reconciled access.
fn scratch_error(source: io::Error) -> IngestError {
    IngestError::Io {
        path: std::path::PathBuf::from("(temporary file of the reconciled access)"),
        source,
    }
}

/// Appends `items` to `spool` as items of a list that is a field of the
/// top-level object (see [`push_item`]), and says where they are.
fn spool_items<T: Serialize>(items: &[T], spool: &Mutex<Spool>) -> io::Result<Piece> {
    if items.is_empty() {
        return Ok(Piece::default());
    }
    let mut buf = Vec::new();
    for item in items {
        push_item(&mut buf, item)?;
    }
    let mut spool = spool
        .lock()
        .map_err(|_| io::Error::other("a worker failed"))?;
    let offset = spool.append(&buf)?;
    Ok(Piece {
        offset,
        len: buf.len() as u64,
    })
}

/// Appends `value` as an item of a list that is a field of the top-level
/// object, as serde_json's pretty form would write it there after an item
/// before it: a comma, a line break, and its pretty JSON with every line
/// indented by four spaces. (For the first item of the list, the comma is
/// left out when the list is written.)
fn push_item(buf: &mut Vec<u8>, value: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(value)?;
    buf.extend_from_slice(b",\n    ");
    // serde_json escapes line breaks inside strings, so every byte 0x0A in
    // its output is a break between lines.
    for (i, line) in json.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            buf.extend_from_slice(b"\n    ");
        }
        buf.extend_from_slice(line);
    }
    Ok(())
}

/// Writes a list whose items [`push_item`] made, given in pieces of one or
/// more items each: `[`, the pieces with the first item's comma left out,
/// then the closing bracket on a line of its own, or `[]` if there were no
/// items.
struct List<'o> {
    out: &'o mut dyn Write,
    empty: bool,
}

impl<'o> List<'o> {
    fn start(out: &'o mut dyn Write) -> io::Result<Self> {
        out.write_all(b"[")?;
        Ok(List { out, empty: true })
    }

    fn piece(&mut self, piece: &[u8]) -> io::Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        // INVARIANT: a piece starts with the comma `push_item` writes.
        self.out
            .write_all(if self.empty { &piece[1..] } else { piece })?;
        self.empty = false;
        Ok(())
    }

    fn end(self) -> io::Result<()> {
        self.out.write_all(if self.empty { b"]" } else { b"\n  ]" })
    }
}

/// Writes every change, read back one at a time in request order.
fn write_changes(changes: &ChangeStore, out: &mut dyn Write) -> io::Result<()> {
    let mut list = List::start(out)?;
    let mut buf = Vec::new();
    changes.for_each_in_request_order(|change| {
        buf.clear();
        push_item(&mut buf, change)?;
        list.piece(&buf)
    })?;
    list.end()
}

/// Writes one list from the temporary file: each application's piece read
/// back, written and dropped in turn.
fn write_pieces(
    spool: &Spool,
    pieces: impl Iterator<Item = Piece>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut list = List::start(out)?;
    for p in pieces.filter(|p| p.len > 0) {
        let len = usize::try_from(p.len).map_err(|_| io::Error::other("a piece too large"))?;
        list.piece(&spool.read_at(p.offset, len)?)?;
    }
    list.end()
}

/// Passes serde_json's output through to `out`, writing each of [`LISTS`]
/// in place of its `[]` (by `fill`, given the list's index) as it is
/// reached.
struct Splice<'w> {
    out: &'w mut dyn Write,
    /// Bytes not yet passed on.
    held: Vec<u8>,
    /// The index in [`LISTS`] of the next marker.
    next: usize,
    fill: &'w mut dyn FnMut(usize, &mut dyn Write) -> io::Result<()>,
}

impl Splice<'_> {
    /// Passes on what is held, up to any start of the next marker that more
    /// bytes could complete, writing each list whose marker is found.
    fn pass(&mut self) -> io::Result<()> {
        loop {
            let Some(marker) = LISTS.get(self.next) else {
                self.out.write_all(&self.held)?;
                self.held.clear();
                return Ok(());
            };
            match find(&self.held, marker) {
                Some(at) => {
                    // Up to and including `"changes": `, then the list.
                    self.out.write_all(&self.held[..at + marker.len() - 2])?;
                    (self.fill)(self.next, &mut *self.out)?;
                    self.held.drain(..at + marker.len());
                    self.next += 1;
                }
                None => {
                    let safe = self.held.len().saturating_sub(marker.len() - 1);
                    self.out.write_all(&self.held[..safe])?;
                    self.held.drain(..safe);
                    return Ok(());
                }
            }
        }
    }

    /// Passes on the rest; every marker must have been found.
    fn finish(mut self) -> io::Result<()> {
        self.pass()?;
        if self.next < LISTS.len() {
            return Err(io::Error::other(
                "the reconciled state's lists were not all found in its JSON form",
            ));
        }
        Ok(())
    }
}

impl Write for Splice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.held.extend_from_slice(buf);
        if self.held.len() >= HOLD {
            self.pass()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_json`'s bytes for the collection at `root`, through a writer
    /// that takes at most 5 bytes per call (so a writer's partial writes
    /// are handled), against serde_json's pretty form of the whole
    /// reconciled state.
    fn assert_streamed_matches_whole(root: &std::path::Path) -> String {
        let whole = crate::reconcile::load_and_run(root, &Default::default()).unwrap();
        let mut expected = serde_json::to_string_pretty(&whole).unwrap();
        expected.push('\n');
        let prepared = crate::reconcile::prepare(root, &Default::default()).unwrap();
        let mut out = Trickle(Vec::new());
        prepared.write_json(&mut out).unwrap();
        let streamed = String::from_utf8(out.0).unwrap();
        assert!(streamed == expected, "the streamed JSON differs");
        streamed
    }

    /// A writer that takes at most five bytes per call.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
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
    fn streamed_json_is_the_whole_state_on_samples() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let text = assert_streamed_matches_whole(&root);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for list in ["changes", "grants", "assignments", "accounts"] {
            assert!(v[list].as_array().is_some_and(|a| a.len() > 3), "{list}");
        }
    }

    #[test]
    fn streamed_json_is_the_whole_state_on_a_generated_workload() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("w");
        crate::generate::generate(
            &root,
            &crate::generate::Options {
                events: 6_000,
                identities: 600,
                applications: 12,
                seed: 5,
            },
        )
        .unwrap();
        assert_streamed_matches_whole(&root);
    }

    /// A collection with no changes and no grants writes its empty lists as
    /// serde_json does: `[]`.
    #[test]
    fn empty_lists_are_written_as_serde_json_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clean");
        copy_dir(&src, dir.path());
        // No sync-log events at all.
        for entry in std::fs::read_dir(dir.path().join("logs")).unwrap() {
            std::fs::write(entry.unwrap().path(), "").unwrap();
        }
        let text = assert_streamed_matches_whole(dir.path());
        assert!(text.contains("\n  \"changes\": [],\n"), "{text}");
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        for entry in walkdir::WalkDir::new(from) {
            let entry = entry.unwrap();
            let target = to.join(entry.path().strip_prefix(from).unwrap());
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }

    #[test]
    fn items_are_indented_as_a_field_of_the_top_level_object() {
        #[derive(Serialize)]
        struct Top {
            a: u8,
            list: Vec<serde_json::Value>,
            b: u8,
        }
        let items = vec![
            serde_json::json!({"x": [1, {"y": "a\nb"}], "z": {}}),
            serde_json::json!([]),
            serde_json::json!("s"),
        ];
        let expected = serde_json::to_string_pretty(&Top {
            a: 1,
            list: items.clone(),
            b: 2,
        })
        .unwrap();
        let mut buf = Vec::new();
        for item in &items {
            push_item(&mut buf, item).unwrap();
        }
        let mut list = Vec::new();
        let mut writer = List::start(&mut list).unwrap();
        writer.piece(&buf[..0]).unwrap();
        writer.piece(&buf).unwrap();
        writer.end().unwrap();
        let built = format!(
            "{{\n  \"a\": 1,\n  \"list\": {},\n  \"b\": 2\n}}",
            String::from_utf8(list).unwrap()
        );
        assert_eq!(built, expected);
    }

    /// Markers split across writes are found; a missing one is an error,
    /// never a silently incomplete document.
    #[test]
    fn the_splice_finds_markers_across_writes_and_refuses_a_missing_one() {
        let text = b"{\n  \"x\": 1,\n  \"changes\": [],\n  \"grants\": [],\n  \"assignments\": [],\n  \"accounts\": []\n}";
        let run = |text: &[u8], step: usize| -> io::Result<Vec<u8>> {
            let mut out = Vec::new();
            let mut fill = |k: usize, out: &mut dyn Write| write!(out, "[{k}]");
            let mut splice = Splice {
                out: &mut out,
                held: Vec::new(),
                next: 0,
                fill: &mut fill,
            };
            for chunk in text.chunks(step) {
                splice.write_all(chunk)?;
                splice.pass()?;
            }
            splice.finish()?;
            Ok(out)
        };
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                String::from_utf8(run(text, step).unwrap()).unwrap(),
                "{\n  \"x\": 1,\n  \"changes\": [0],\n  \"grants\": [1],\n  \"assignments\": [2],\n  \"accounts\": [3]\n}",
                "{step}"
            );
        }
        let missing = b"{\n  \"changes\": [],\n  \"grants\": []\n}";
        assert!(run(missing, 4).is_err());
    }
}
