//! The list of every subject evaluated, kept for JUnit (which lists passing
//! subjects too).
//!
//! A W10 `attest` evaluates 16.5 million subjects, about 0.9 GiB of ids:
//! held in memory until the JUnit file is written, they were most of
//! `attest`'s peak. So each application's ids are collected in memory
//! ([`EvaluatedSubjects`]: each kind's ids one after another in one buffer,
//! a [`StrList`]), sorted by the thread that evaluated it, and written to a
//! temporary file as one sorted run per kind
//! (`EvaluatedSubjects::spill`). `SubjectLists::merge` then orders each
//! kind's runs: application runs of grants, assignments and accounts do not
//! overlap (their ids start with the application), so ordering the runs by
//! their first id gives the sorted list, and reading them in that order
//! streams it ([`SubjectLists::ids`]). A kind whose runs do overlap
//! (changes are named by key) is read back, sorted whole and written again
//! as one run.
//!
//! In a run each id is its length (4 bytes, little-endian) and its UTF-8
//! bytes. Every id starts with its kind and a colon (`grant:…`), as
//! [`super::findings::Subject::id`] documents; a list is refused otherwise,
//! because the JUnit writer counts its test cases per kind
//! ([`SubjectLists::distinct`]) before it walks them, and relies on kinds
//! never sharing an id.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::sync::{Arc, Mutex};

use super::findings::SubjectKind;
use crate::spool::{Spool, SpoolReader};
use crate::strings::StrList;

/// Every subject evaluated, by kind, in memory: one partition's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvaluatedSubjects {
    kinds: BTreeMap<SubjectKind, StrList>,
}

impl EvaluatedSubjects {
    /// Appends `id` to the list of `kind`.
    pub fn push(&mut self, kind: SubjectKind, id: &str) {
        self.list_mut(kind).push(id);
    }

    /// The list of `kind`, to append to.
    pub fn list_mut(&mut self, kind: SubjectKind) -> &mut StrList {
        self.kinds.entry(kind).or_default()
    }

    /// Sorts each kind's ids and appends each kind to `spool` as one run.
    /// Returns where the runs are.
    pub(crate) fn spill(self, spool: &Mutex<Spool>) -> io::Result<Vec<(SubjectKind, Run)>> {
        let mut runs = Vec::with_capacity(self.kinds.len());
        for (kind, list) in self.kinds {
            if list.is_empty() {
                continue;
            }
            let run = write_run(kind, list, |bytes| {
                // A poisoned lock means another partition panicked while
                // appending; the run is then abandoned anyway.
                spool
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .append(bytes)
            })?;
            runs.push((kind, run));
        }
        Ok(runs)
    }
}

/// Whether `id` starts with `kind` and a colon.
pub(crate) fn has_prefix(kind: SubjectKind, id: &str) -> bool {
    id.strip_prefix(kind.as_str())
        .is_some_and(|rest| rest.starts_with(':'))
}

/// The kind `id` names by its prefix, if any.
pub(crate) fn kind_of(id: &str) -> Option<SubjectKind> {
    SubjectKind::ALL.into_iter().find(|k| has_prefix(*k, id))
}

/// Sorts `list` (ids of `kind`, not empty) and writes it as one run with
/// `append`, which returns where the bytes start.
fn write_run(
    kind: SubjectKind,
    list: StrList,
    append: impl FnOnce(&[u8]) -> io::Result<u64>,
) -> io::Result<Run> {
    let list = list.into_sorted();
    let bytes = encode(kind, &list)?;
    let offset = append(&bytes)?;
    Ok(Run::new(&list, offset, bytes.len() as u64))
}

/// The ids of `list` (of `kind`) as a run: each its length (u32,
/// little-endian) and its bytes.
fn encode(kind: SubjectKind, list: &StrList) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(list.bytes() + 4 * list.len());
    for id in list.iter() {
        if !has_prefix(kind, id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("subject id `{id}` does not start with `{}:`", kind.as_str()),
            ));
        }
        let len = u32::try_from(id.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a subject id over 4 GiB"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    Ok(out)
}

/// Where one sorted run of ids lies in the spool.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    offset: u64,
    bytes: u64,
    count: usize,
    /// Ids without their repeats.
    distinct: usize,
    first: String,
    last: String,
}

impl Run {
    /// The run of `list` (sorted, not empty), written at `offset`.
    fn new(list: &StrList, offset: u64, bytes: u64) -> Run {
        let mut distinct = 0;
        let mut last = None;
        for id in list.iter() {
            if last != Some(id) {
                distinct += 1;
                last = Some(id);
            }
        }
        Run {
            offset,
            bytes,
            count: list.len(),
            distinct,
            first: list.get(0).unwrap_or_default().to_owned(),
            last: list
                .get(list.len().wrapping_sub(1))
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// Every subject evaluated, by kind, each kind sorted, in a temporary file
/// (see the module documentation).
#[derive(Clone, Default)]
pub struct SubjectLists {
    spool: Option<Arc<Spool>>,
    /// Each kind's runs, in order: read one after another, sorted.
    kinds: BTreeMap<SubjectKind, Vec<Run>>,
}

impl std::fmt::Debug for SubjectLists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Where the runs lie depends on which thread wrote first: only the
        // counts are shown.
        f.debug_map()
            .entries(
                self.kinds
                    .iter()
                    .map(|(k, runs)| (k, runs.iter().map(|r| r.count).sum::<usize>())),
            )
            .finish()
    }
}

impl SubjectLists {
    /// Joins the runs the partitions spilled to `spool` into one sorted
    /// list per kind (see the module documentation).
    pub(crate) fn merge(
        mut spool: Spool,
        parts: Vec<Vec<(SubjectKind, Run)>>,
    ) -> io::Result<SubjectLists> {
        let mut kinds: BTreeMap<SubjectKind, Vec<Run>> = BTreeMap::new();
        for (kind, run) in parts.into_iter().flatten() {
            kinds.entry(kind).or_default().push(run);
        }
        spool.flush()?;
        for (kind, runs) in kinds.iter_mut() {
            runs.sort_by(|a, b| (&a.first, &a.last, a.offset).cmp(&(&b.first, &b.last, b.offset)));
            if runs.windows(2).all(|w| w[0].last <= w[1].first) {
                continue;
            }
            // Overlapping runs: sorted whole.
            let mut list = StrList::with_capacity(
                runs.iter().map(|r| r.count).sum(),
                runs.iter().map(|r| r.bytes as usize).sum(),
            );
            let mut ids = Ids::new(&spool, runs)?;
            while let Some(id) = ids.head() {
                list.push(id);
                ids.advance()?;
            }
            drop(ids);
            *runs = vec![write_run(*kind, list, |bytes| spool.append(bytes))?];
        }
        spool.flush()?;
        Ok(SubjectLists {
            spool: Some(Arc::new(spool)),
            kinds,
        })
    }

    /// The lists of `subjects`, sorted, in a temporary file of their own
    /// (for an evaluation assembled by hand).
    pub fn from_subjects(subjects: EvaluatedSubjects) -> io::Result<SubjectLists> {
        let spool = Mutex::new(Spool::new());
        let runs = subjects.spill(&spool)?;
        let spool = spool
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        SubjectLists::merge(spool, vec![runs])
    }

    /// How many ids, of all kinds.
    pub fn len(&self) -> usize {
        self.kinds.values().flatten().map(|r| r.count).sum()
    }

    /// How many different ids of `kind` (its runs are sorted and do not
    /// overlap, so a repeat across runs can only be where one ends and the
    /// next begins).
    pub fn distinct(&self, kind: SubjectKind) -> usize {
        let Some(runs) = self.kinds.get(&kind) else {
            return 0;
        };
        let within: usize = runs.iter().map(|r| r.distinct).sum();
        let across = runs.windows(2).filter(|w| w[0].last == w[1].first).count();
        // Every run has an id, so `across` (at most one per boundary) is
        // never more than `within`.
        within.saturating_sub(across)
    }

    /// Which of `ids` (sorted, without repeats, of `kind`) are in the list
    /// of `kind`. Reads only the runs whose range holds one of them.
    pub fn contains(&self, kind: SubjectKind, ids: &[&str]) -> io::Result<Vec<bool>> {
        let mut out = vec![false; ids.len()];
        let (Some(spool), Some(runs)) = (&self.spool, self.kinds.get(&kind)) else {
            return Ok(out);
        };
        let mut at = 0;
        for run in runs {
            // Ids before this run are in no run.
            while ids.get(at).is_some_and(|id| *id < run.first.as_str()) {
                at += 1;
            }
            if ids.get(at).is_none_or(|id| *id > run.last.as_str()) {
                continue;
            }
            let mut walked = Ids::new(spool, std::slice::from_ref(run))?;
            while let (Some(head), Some(id)) = (walked.head(), ids.get(at)) {
                if *id > run.last.as_str() {
                    break;
                }
                match head.cmp(id) {
                    std::cmp::Ordering::Less => walked.advance()?,
                    std::cmp::Ordering::Equal => {
                        out[at] = true;
                        at += 1;
                    }
                    std::cmp::Ordering::Greater => at += 1,
                }
            }
            // An id equal to this run's last may begin the next run too.
            while ids.get(at).is_some_and(|id| *id <= run.last.as_str()) {
                at += 1;
            }
        }
        Ok(out)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of `kind`, sorted, read back as they are walked.
    pub fn ids(&self, kind: SubjectKind) -> io::Result<Ids<'_>> {
        match (&self.spool, self.kinds.get(&kind)) {
            (Some(spool), Some(runs)) => Ids::new(spool, runs),
            _ => Ok(Ids::empty()),
        }
    }

    /// Every `(kind, id)`, by kind, each kind sorted (read whole: for tests
    /// and small collections).
    pub fn to_vec(&self) -> io::Result<Vec<(SubjectKind, String)>> {
        let mut out = Vec::with_capacity(self.len());
        for kind in self.kinds.keys() {
            let mut ids = self.ids(*kind)?;
            while let Some(id) = ids.head() {
                out.push((*kind, id.to_owned()));
                ids.advance()?;
            }
        }
        Ok(out)
    }
}

/// A cursor over one kind's sorted ids, reading its runs as it goes.
pub struct Ids<'a> {
    spool: Option<&'a Spool>,
    /// The runs not yet started.
    runs: std::slice::Iter<'a, Run>,
    /// The run being read.
    reader: Option<BufReader<SpoolReader<'a>>>,
    /// Ids left in it.
    left: usize,
    /// Bytes left in it.
    bytes_left: u64,
    /// The current id, if there is one.
    head: Option<String>,
}

/// Bytes read from the temporary file at a time, per cursor.
const READ_BUFFER: usize = 64 * 1024;

impl<'a> Ids<'a> {
    fn empty() -> Ids<'a> {
        Ids {
            spool: None,
            runs: [].iter(),
            reader: None,
            left: 0,
            bytes_left: 0,
            head: None,
        }
    }

    /// A cursor at the first id of `runs`.
    fn new(spool: &'a Spool, runs: &'a [Run]) -> io::Result<Ids<'a>> {
        let mut ids = Ids {
            spool: Some(spool),
            runs: runs.iter(),
            reader: None,
            left: 0,
            bytes_left: 0,
            head: Some(String::new()),
        };
        ids.advance()?;
        Ok(ids)
    }

    /// The current id; `None` once every id was walked.
    pub fn head(&self) -> Option<&str> {
        self.head.as_deref()
    }

    /// Moves to the next id.
    pub fn advance(&mut self) -> io::Result<()> {
        self.step().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read the evaluated subjects back from their temporary file: {e}"),
            )
        })
    }

    fn step(&mut self) -> io::Result<()> {
        while self.left == 0 {
            let (Some(spool), Some(run)) = (self.spool, self.runs.next()) else {
                self.head = None;
                self.reader = None;
                return Ok(());
            };
            self.reader = Some(BufReader::with_capacity(
                READ_BUFFER,
                spool.reader(run.offset, run.bytes),
            ));
            self.left = run.count;
            self.bytes_left = run.bytes;
        }
        let (Some(reader), Some(head)) = (&mut self.reader, self.head.take()) else {
            return Ok(());
        };
        let mut len = [0u8; 4];
        reader.read_exact(&mut len)?;
        let len = u64::from(u32::from_le_bytes(len));
        self.bytes_left = self
            .bytes_left
            .checked_sub(4 + len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a damaged run of ids"))?;
        let mut bytes = head.into_bytes();
        bytes.clear();
        bytes.resize(len as usize, 0);
        reader.read_exact(&mut bytes)?;
        let id =
            String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.head = Some(id);
        self.left -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Spills each part to one spool, as the partitions do, and merges.
    fn spill_and_merge(parts: Vec<EvaluatedSubjects>) -> SubjectLists {
        let spool = Mutex::new(Spool::new());
        let runs = parts
            .into_iter()
            .map(|p| p.spill(&spool).unwrap())
            .collect();
        SubjectLists::merge(spool.into_inner().unwrap(), runs).unwrap()
    }

    proptest! {
        /// Whatever the ids and however they are split into parts, the
        /// merge holds the same ids as one sorted list of all of them:
        /// overlapping runs (`a` + `a-b` prefixes, equal ids, kinds split
        /// across parts) included.
        #[test]
        fn merging_spilled_parts_gives_the_sorted_whole(
            parts in prop::collection::vec(
                prop::collection::vec((0..3usize, "(a|a-b|a/b|b)/[a-c\u{e9}]{0,3}"), 0..20),
                0..6,
            )
        ) {
            let kinds = [SubjectKind::Change, SubjectKind::Grant, SubjectKind::Account];
            let mut whole: Vec<(SubjectKind, String)> = Vec::new();
            let mut unsorted = Vec::new();
            for part in &parts {
                let mut e = EvaluatedSubjects::default();
                for (k, id) in part {
                    let id = format!("{}:{id}", kinds[*k].as_str());
                    e.push(kinds[*k], &id);
                    whole.push((kinds[*k], id));
                }
                unsorted.push(e);
            }
            whole.sort();
            let merged = spill_and_merge(unsorted);
            prop_assert_eq!(merged.len(), whole.len());
            for kind in kinds {
                let mut ids: Vec<&str> = whole
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, id)| id.as_str())
                    .collect();
                ids.dedup();
                prop_assert_eq!(merged.distinct(kind), ids.len());
                // Every id is found; near misses are not.
                prop_assert!(merged.contains(kind, &ids).unwrap().iter().all(|c| *c));
                let mut misses: Vec<String> = ids.iter().map(|id| format!("{id}~")).collect();
                misses.retain(|m| !ids.contains(&m.as_str()));
                misses.sort();
                misses.dedup();
                let misses: Vec<&str> = misses.iter().map(String::as_str).collect();
                prop_assert!(merged.contains(kind, &misses).unwrap().iter().all(|c| !*c));
            }
            prop_assert_eq!(merged.to_vec().unwrap(), whole);
        }
    }

    #[test]
    fn disjoint_runs_are_read_in_place_and_overlapping_ones_sorted_whole() {
        let part = |ids: &[(SubjectKind, &str)]| {
            let mut e = EvaluatedSubjects::default();
            for (k, id) in ids {
                e.push(*k, id);
            }
            e
        };
        use SubjectKind::{Change, Grant};
        let merged = spill_and_merge(vec![
            part(&[
                (Grant, "grant:b/2"),
                (Grant, "grant:b/1"),
                (Change, "change:k3"),
            ]),
            part(&[
                (Grant, "grant:a/1"),
                (Change, "change:k1"),
                (Change, "change:k4"),
            ]),
        ]);
        // The grants' two runs are kept, in order; the changes' were joined.
        assert_eq!(merged.kinds[&Grant].len(), 2);
        assert_eq!(merged.kinds[&Change].len(), 1);
        let mut ids = merged.ids(Change).unwrap();
        let mut walked = Vec::new();
        while let Some(id) = ids.head() {
            walked.push(id.to_owned());
            ids.advance().unwrap();
        }
        assert_eq!(walked, ["change:k1", "change:k3", "change:k4"]);
        assert_eq!(format!("{merged:?}"), "{Change: 3, Grant: 3}");
        assert!(merged.ids(SubjectKind::Snapshot).unwrap().head().is_none());
    }

    #[test]
    fn distinct_counts_repeats_within_and_across_runs_once() {
        use SubjectKind::Grant;
        let part = |ids: &[&str]| {
            let mut e = EvaluatedSubjects::default();
            for id in ids {
                e.push(Grant, id);
            }
            e
        };
        let merged = spill_and_merge(vec![
            part(&["grant:a", "grant:b", "grant:b"]),
            part(&["grant:b"]),
            part(&["grant:b", "grant:c"]),
            part(&["grant:e"]),
        ]);
        assert_eq!(
            merged.kinds[&Grant].len(),
            4,
            "the runs touch but do not overlap"
        );
        assert_eq!(merged.len(), 7);
        assert_eq!(merged.distinct(Grant), 4);
        assert_eq!(merged.distinct(SubjectKind::Change), 0);
        // Membership reads the runs that could hold each id.
        let asked = [
            "grant:0", "grant:a", "grant:b", "grant:bb", "grant:c", "grant:d", "grant:e", "grant:z",
        ];
        assert_eq!(
            merged.contains(Grant, &asked).unwrap(),
            [false, true, true, false, true, false, true, false]
        );
        assert_eq!(
            merged.contains(SubjectKind::Change, &["change:a"]).unwrap(),
            [false]
        );
    }

    #[test]
    fn an_id_without_its_kind_prefix_is_refused() {
        let mut e = EvaluatedSubjects::default();
        e.push(SubjectKind::Grant, "grant:fine");
        e.push(SubjectKind::Grant, "account:not-a-grant");
        let err = SubjectLists::from_subjects(e).unwrap_err();
        assert!(
            err.to_string()
                .contains("`account:not-a-grant` does not start with `grant:`"),
            "{err}"
        );
        assert_eq!(kind_of("grant:x"), Some(SubjectKind::Grant));
        assert_eq!(kind_of("grants:x"), None);
        assert_eq!(kind_of("grant"), None);
    }

    #[test]
    fn a_damaged_run_is_an_error_not_a_panic_or_a_short_list() {
        let mut spool = Spool::in_memory();
        // One id that says it is 1000 bytes long, in a run of 8 bytes.
        let offset = spool
            .append(&[232, 3, 0, 0, b'a', b'b', b'c', b'd'])
            .unwrap();
        let run = Run {
            offset,
            bytes: 8,
            count: 1,
            distinct: 1,
            first: "abcd".into(),
            last: "abcd".into(),
        };
        let lists = SubjectLists::merge(spool, vec![vec![(SubjectKind::Grant, run)]]);
        let err = lists.and_then(|l| l.to_vec()).unwrap_err();
        assert!(err.to_string().contains("temporary file"), "{err}");
        // Invalid UTF-8 too.
        let mut spool = Spool::in_memory();
        let offset = spool.append(&[2, 0, 0, 0, 0xff, 0xfe]).unwrap();
        let run = Run {
            offset,
            bytes: 6,
            count: 1,
            distinct: 1,
            first: "x".into(),
            last: "x".into(),
        };
        let lists = SubjectLists::merge(spool, vec![vec![(SubjectKind::Grant, run)]]).unwrap();
        assert!(lists.to_vec().is_err());
    }
}
