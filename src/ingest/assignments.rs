//! The desired state's approved assignments, kept compact and grouped by
//! application.
//!
//! A large governance export holds millions of assignments; as
//! [`Assignment`] values (four heap strings and a file name each) they were
//! the largest thing a run held for its whole length. Here each is a fixed
//! record of under 100 bytes: the identity, the entitlement and the approval
//! are indices into string tables, and records are stored per application,
//! so reconciliation unpacks one application's assignments
//! ([`DesiredAssignments::of_application`]) when it reconciles that
//! application, and no more.
//!
//! The records never accumulate in memory. As each assignment is read it is
//! written to one of 64 temporary buckets, chosen by its
//! application (`Incoming`); when the document ends, the buckets are read
//! back one at a time, each application's records sorted and checked for
//! duplicates, and written to one more temporary file, 81 bytes a record,
//! one application after another (`AssignmentWriter`), from which
//! reconciliation reads one application at a time. So memory holds one
//! bucket's records at a time (about 1/64 of them, more if one application
//! dominates: what grows is the largest application), never all 5.7
//! million of a W10 collection. The files are unnamed spools: deleted when closed, by the
//! operating system even if the process dies; if no temporary file can be
//! made, the same bytes stay in memory and the results are the same.

use std::io;
use std::num::NonZeroU32;
use std::sync::Arc;

use super::digest::Sha256Digest;
use super::model::{Assignment, SourceRef};
use crate::spool::{Buckets, Spool};
use crate::strings::StrList;
use crate::time::Timestamp;

/// One assignment, packed. `identity` and `entitlement` index sorted tables,
/// so comparing them orders records as comparing the strings would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    pub(crate) identity: u32,
    pub(crate) entitlement: u32,
    /// Position in the document's `assignments` list.
    pub(crate) index: u32,
    /// One more than the approval's index in the approvals table.
    pub(crate) approval: Option<NonZeroU32>,
    pub(crate) line: u64,
    pub(crate) granted_at: Timestamp,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) sha256: Sha256Digest,
}

/// The approved assignments of a desired state, by application.
#[derive(Debug, Default)]
pub struct DesiredAssignments {
    /// The desired-state file, for each record's [`SourceRef`].
    file: Option<Arc<str>>,
    /// Identity ids, sorted.
    identities: StrList,
    /// Distinct entitlements, sorted.
    entitlements: StrList,
    /// Approvals, in the order they were read.
    approvals: StrList,
    /// The records, one application after another, each application's
    /// sorted by (identity, entitlement); `None` when there are none.
    records: Option<Spool>,
    /// Applications with assignments, sorted by id: where their records
    /// start in `records` and how many there are.
    apps: Vec<(String, u64, usize)>,
}

/// Bytes per record in the temporary file.
const RECORD: usize = 81;

/// Buckets the records are spread over as they are read.
pub(crate) const BUCKETS: usize = 64;

/// Bytes per record in a bucket: its application's position, then the
/// record.
const BUCKETED: usize = 4 + RECORD;

/// The error for a spilled or bucketed record that does not read back.
pub(crate) fn corrupt() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a spilled assignment is corrupt",
    )
}

/// Assignments as they are read, spread over [`BUCKETS`] temporary buckets
/// by application (see the module documentation); a failed write is
/// reported by [`Self::drain`].
#[derive(Debug)]
pub(crate) struct Incoming {
    buckets: Buckets,
}

impl Default for Incoming {
    fn default() -> Self {
        Incoming {
            buckets: Buckets::new(BUCKETS),
        }
    }
}

impl Incoming {
    /// Adds `record`, of the application at position `app`.
    pub(crate) fn push(&mut self, app: u32, record: &Packed) {
        self.buckets.append(app as usize, |out| {
            out.extend_from_slice(&app.to_le_bytes());
            record.encode(out);
            Ok(())
        });
    }

    /// Calls `f` with each application's position and records (in the order
    /// they were added), a bucket at a time, each bucket freed once done.
    /// Fails if a bucket could not be written or read back.
    pub(crate) fn drain(
        self,
        mut f: impl FnMut(u32, Vec<Packed>) -> io::Result<()>,
    ) -> io::Result<()> {
        for spool in self.buckets.into_spools()? {
            let bytes = spool.read_all()?;
            drop(spool);
            if bytes.len() % BUCKETED != 0 {
                return Err(corrupt());
            }
            let mut records = bytes
                .chunks_exact(BUCKETED)
                .map(|c| {
                    let (app, record) = c.split_at(4);
                    let app = u32::from_le_bytes(app.try_into().map_err(|_| corrupt())?);
                    Ok((
                        app,
                        Packed::decode(record.try_into().map_err(|_| corrupt())?)?,
                    ))
                })
                .collect::<io::Result<Vec<(u32, Packed)>>>()?;
            drop(bytes);
            // Stable: each application's records stay in the order added.
            records.sort_by_key(|(app, _)| *app);
            let mut records = records.into_iter().peekable();
            while let Some((app, first)) = records.next() {
                let mut group = vec![first];
                while let Some((_, r)) = records.next_if(|(a, _)| *a == app) {
                    group.push(r);
                }
                f(app, group)?;
            }
        }
        Ok(())
    }
}

/// Writes applications' records, in any order, into the file a
/// [`DesiredAssignments`] reads.
#[derive(Debug)]
pub(crate) struct AssignmentWriter {
    records: Spool,
    apps: Vec<(String, u64, usize)>,
    at: u64,
}

impl AssignmentWriter {
    pub(crate) fn new() -> Self {
        AssignmentWriter {
            records: Spool::new(),
            apps: Vec::new(),
            at: 0,
        }
    }

    /// Adds `application`'s records (sorted by (identity, entitlement)).
    pub(crate) fn add(&mut self, application: &str, records: &[Packed]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.apps
            .push((application.to_owned(), self.at, records.len()));
        for r in records {
            let before = self.records.buffer().len();
            r.encode(self.records.buffer());
            debug_assert_eq!(self.records.buffer().len() - before, RECORD);
            self.records.commit(before)?;
            self.at += RECORD as u64;
        }
        Ok(())
    }

    /// The assignments written, with the tables their indices point into.
    pub(crate) fn finish(
        mut self,
        file: Arc<str>,
        identities: StrList,
        entitlements: StrList,
        approvals: StrList,
    ) -> io::Result<DesiredAssignments> {
        self.records.flush()?;
        self.apps.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(DesiredAssignments {
            file: Some(file),
            identities,
            entitlements,
            approvals,
            records: Some(self.records),
            apps: self.apps,
        })
    }
}

impl Packed {
    /// The record's bytes, little-endian: identity, entitlement, index,
    /// approval (0 for none), line, granted_at (seconds, nanoseconds),
    /// expires_at (present, seconds, nanoseconds), SHA-256.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.identity.to_le_bytes());
        out.extend_from_slice(&self.entitlement.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.approval.map_or(0, NonZeroU32::get).to_le_bytes());
        out.extend_from_slice(&self.line.to_le_bytes());
        out.extend_from_slice(&self.granted_at.timestamp().to_le_bytes());
        out.extend_from_slice(&self.granted_at.timestamp_subsec_nanos().to_le_bytes());
        let expires = self.expires_at.unwrap_or_default();
        out.push(u8::from(self.expires_at.is_some()));
        out.extend_from_slice(&expires.timestamp().to_le_bytes());
        out.extend_from_slice(&expires.timestamp_subsec_nanos().to_le_bytes());
        out.extend_from_slice(self.sha256.as_bytes());
    }

    /// A record from [`Self::encode`]'s bytes.
    fn decode(b: &[u8; RECORD]) -> io::Result<Packed> {
        fn take<const N: usize>(b: &[u8], at: &mut usize) -> [u8; N] {
            let mut out = [0u8; N];
            out.copy_from_slice(&b[*at..*at + N]);
            *at += N;
            out
        }
        let at = &mut 0;
        let identity = u32::from_le_bytes(take(b, at));
        let entitlement = u32::from_le_bytes(take(b, at));
        let index = u32::from_le_bytes(take(b, at));
        let approval = NonZeroU32::new(u32::from_le_bytes(take(b, at)));
        let line = u64::from_le_bytes(take(b, at));
        let time = |at: &mut usize| {
            let secs = i64::from_le_bytes(take(b, at));
            let nanos = u32::from_le_bytes(take(b, at));
            Timestamp::from_timestamp(secs, nanos).ok_or_else(corrupt)
        };
        let granted_at = time(at)?;
        let has_expiry = take::<1>(b, at)[0] == 1;
        let expires = time(at)?;
        let sha256 = Sha256Digest::from_bytes(take(b, at));
        Ok(Packed {
            identity,
            entitlement,
            index,
            approval,
            line,
            granted_at,
            expires_at: has_expiry.then_some(expires),
            sha256,
        })
    }
}

impl DesiredAssignments {
    /// How many assignments there are.
    pub fn len(&self) -> usize {
        self.apps.iter().map(|(_, _, n)| n).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The assignments in `application`, sorted by (identity, entitlement).
    /// Fails only if the records cannot be read back.
    pub fn of_application(&self, application: &str) -> io::Result<Vec<Assignment>> {
        let (Some(spool), Ok(i)) = (
            &self.records,
            self.apps
                .binary_search_by(|(app, _, _)| app.as_str().cmp(application)),
        ) else {
            return Ok(Vec::new());
        };
        let (app, at, count) = &self.apps[i];
        let bytes = spool.read_at(*at, count * RECORD)?;
        let records = bytes
            .chunks_exact(RECORD)
            .map(|c| Packed::decode(c.try_into().map_err(|_| corrupt())?))
            .collect::<io::Result<Vec<Packed>>>()?;
        self.unpack(app, &records)
    }

    /// Every assignment, sorted by (application, identity, entitlement).
    pub fn all(&self) -> io::Result<Vec<Assignment>> {
        let mut out = Vec::with_capacity(self.len());
        for (app, _, _) in &self.apps {
            out.extend(self.of_application(app)?);
        }
        Ok(out)
    }

    /// `records` as assignments. An index with no string behind it (a
    /// corrupt temporary file) is an error.
    fn unpack(&self, application: &str, records: &[Packed]) -> io::Result<Vec<Assignment>> {
        let file: Arc<str> = self.file.clone().unwrap_or_else(|| Arc::from(""));
        let string = |table: &'_ StrList, i: usize| -> io::Result<String> {
            table.get(i).map(str::to_owned).ok_or_else(corrupt)
        };
        records
            .iter()
            .map(|p| {
                Ok(Assignment {
                    identity: string(&self.identities, p.identity as usize)?,
                    application: application.to_owned(),
                    entitlement: string(&self.entitlements, p.entitlement as usize)?,
                    granted_at: p.granted_at,
                    expires_at: p.expires_at,
                    approval: p
                        .approval
                        .map(|a| string(&self.approvals, a.get() as usize - 1))
                        .transpose()?,
                    source: SourceRef {
                        file: file.clone(),
                        line: p.line,
                        sha256: p.sha256,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_record_stays_small() {
        // What the store is for: a fixed record, a fraction of an
        // `Assignment` with its heap strings. Growing it should be a
        // deliberate change.
        assert!(
            std::mem::size_of::<Packed>() <= 96,
            "{}",
            std::mem::size_of::<Packed>()
        );
    }

    #[test]
    fn records_survive_the_temporary_file() {
        let t = |s: &str| crate::time::parse_timestamp(s).unwrap();
        let records = [
            Packed {
                identity: 1,
                entitlement: u32::MAX,
                index: 7,
                approval: NonZeroU32::new(1),
                line: u64::MAX,
                granted_at: t("2026-01-01T00:00:00.123456789Z"),
                expires_at: Some(t("1969-12-31T23:59:59.5Z")),
                sha256: Sha256Digest::of(b"a"),
            },
            Packed {
                identity: 0,
                entitlement: 0,
                index: 0,
                approval: None,
                line: 0,
                granted_at: t("2026-01-01T00:00:00Z"),
                expires_at: None,
                sha256: Sha256Digest::of(b"b"),
            },
        ];
        for r in &records {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            assert_eq!(buf.len(), RECORD);
            let back = Packed::decode(&buf.as_slice().try_into().unwrap()).unwrap();
            assert_eq!(&back, r);
        }
        let mut identities = StrList::default();
        identities.push("alice");
        identities.push("bob");
        let mut entitlements = StrList::default();
        entitlements.push("admin");
        let mut approvals = StrList::default();
        approvals.push("APR-1");
        let mut records = records.to_vec();
        records[0].entitlement = 0;
        // Through the buckets (applications 0 and 64 share one), then the
        // final file, written in another order than the applications'.
        let mut incoming = Incoming::default();
        let apps = ["crm", "erp", "hr"];
        let position = |app: u32| if app == 64 { 2 } else { app as usize };
        for (app, r) in [
            (64, &records[1]),
            (1, &records[1]),
            (0, &records[0]),
            (64, &records[0]),
            (0, &records[1]),
        ] {
            incoming.push(app, r);
        }
        let mut groups = Vec::new();
        incoming
            .drain(|app, group| {
                groups.push((app, group));
                Ok(())
            })
            .unwrap();
        groups.sort_by_key(|(app, _)| *app);
        assert_eq!(
            groups,
            [
                (0, vec![records[0].clone(), records[1].clone()]),
                (1, vec![records[1].clone()]),
                (64, vec![records[1].clone(), records[0].clone()]),
            ]
        );
        let mut w = AssignmentWriter::new();
        for (app, mut group) in groups.into_iter().rev() {
            group.sort_by_key(|r| (r.identity, r.entitlement));
            w.add(apps[position(app)], &group).unwrap();
        }
        let d = w
            .finish(
                Arc::from("desired.json"),
                identities,
                entitlements,
                approvals,
            )
            .unwrap();
        assert_eq!(d.len(), 5);
        let all = d.all().unwrap();
        let order: Vec<(&str, &str)> = all
            .iter()
            .map(|a| (a.application.as_str(), a.identity.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("crm", "alice"),
                ("crm", "bob"),
                ("erp", "alice"),
                ("hr", "alice"),
                ("hr", "bob")
            ]
        );
        assert_eq!(d.of_application("erp").unwrap(), all[2..3]);
        assert!(d.of_application("nope").unwrap().is_empty());
        assert_eq!(all[0].identity, "alice");
        assert_eq!(all[1].approval.as_deref(), Some("APR-1"));
        assert_eq!(all[1].source.line, u64::MAX);
        assert_eq!(all[1].expires_at, records[0].expires_at);
        assert!(DesiredAssignments::default().all().unwrap().is_empty());
    }
}
