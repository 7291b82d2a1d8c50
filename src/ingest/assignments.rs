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
//! Once the desired state is read, the records move to an unnamed temporary
//! file ([`DesiredAssignments::spill`]): 81 bytes each, one application after
//! another, read back one application at a time. They are then not in
//! memory while the sync logs are folded, when memory peaks. The file is
//! deleted when it is closed, by the operating system even if the process
//! dies; if no temporary file can be made, the records stay in memory.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use super::digest::Sha256Digest;
use super::model::{Assignment, SourceRef};
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
    /// Applications (sorted by id) with their records, sorted by
    /// (identity, entitlement); applications without assignments are left
    /// out. Emptied by [`Self::spill`].
    by_application: Vec<(String, Vec<Packed>)>,
    /// Where [`Self::spill`] put the records.
    spilled: Option<Spilled>,
}

/// Records in a temporary file: the file, and for each application (in the
/// order of `by_application` before the spill) its id, where its records
/// start and how many there are.
#[derive(Debug)]
struct Spilled {
    file: Mutex<std::fs::File>,
    apps: Vec<(String, u64, usize)>,
}

/// Bytes per record in the temporary file.
const RECORD: usize = 81;

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
        let corrupt = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a spilled assignment is corrupt",
            )
        };
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
    /// Records in memory, by application (sorted by id, each sorted by
    /// (identity, entitlement)), with the tables their indices point into.
    pub(crate) fn new(
        file: Arc<str>,
        identities: StrList,
        entitlements: StrList,
        approvals: StrList,
        by_application: Vec<(String, Vec<Packed>)>,
    ) -> Self {
        DesiredAssignments {
            file: Some(file),
            identities,
            entitlements,
            approvals,
            by_application,
            spilled: None,
        }
    }

    /// How many assignments there are.
    pub fn len(&self) -> usize {
        match &self.spilled {
            Some(s) => s.apps.iter().map(|(_, _, n)| n).sum(),
            None => self.by_application.iter().map(|(_, v)| v.len()).sum(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the records to an unnamed temporary file (see the module
    /// documentation). If the file cannot be made or written, the records
    /// stay in memory: the results are the same either way.
    pub fn spill(&mut self) {
        if self.spilled.is_some() {
            return;
        }
        if let Ok(spilled) = self.write_spill() {
            self.spilled = Some(spilled);
            self.by_application = Vec::new();
        }
    }

    fn write_spill(&self) -> io::Result<Spilled> {
        let mut out = io::BufWriter::with_capacity(1 << 20, tempfile::tempfile()?);
        let mut apps = Vec::with_capacity(self.by_application.len());
        let mut at = 0u64;
        let mut buf = Vec::with_capacity(RECORD);
        for (app, records) in &self.by_application {
            apps.push((app.clone(), at, records.len()));
            for r in records {
                buf.clear();
                r.encode(&mut buf);
                debug_assert_eq!(buf.len(), RECORD);
                out.write_all(&buf)?;
                at += RECORD as u64;
            }
        }
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(Spilled {
            file: Mutex::new(file),
            apps,
        })
    }

    /// The assignments in `application`, sorted by (identity, entitlement).
    /// Fails only if spilled records cannot be read back.
    pub fn of_application(&self, application: &str) -> io::Result<Vec<Assignment>> {
        let Some(s) = &self.spilled else {
            return Ok(
                match self
                    .by_application
                    .binary_search_by(|(app, _)| app.as_str().cmp(application))
                {
                    Ok(i) => {
                        let (app, records) = &self.by_application[i];
                        self.unpack(app, records)?
                    }
                    Err(_) => Vec::new(),
                },
            );
        };
        let Ok(i) = s
            .apps
            .binary_search_by(|(app, _, _)| app.as_str().cmp(application))
        else {
            return Ok(Vec::new());
        };
        let (app, at, count) = &s.apps[i];
        let mut bytes = vec![0u8; count * RECORD];
        {
            let mut file = s
                .file
                .lock()
                .map_err(|_| io::Error::other("the spilled assignments' file lock is poisoned"))?;
            file.seek(SeekFrom::Start(*at))?;
            file.read_exact(&mut bytes)?;
        }
        let records = bytes
            .chunks_exact(RECORD)
            .map(|c| match <&[u8; RECORD]>::try_from(c) {
                Ok(c) => Packed::decode(c),
                Err(_) => Err(io::Error::from(io::ErrorKind::InvalidData)),
            })
            .collect::<io::Result<Vec<Packed>>>()?;
        self.unpack(app, &records)
    }

    /// Every assignment, sorted by (application, identity, entitlement).
    pub fn all(&self) -> io::Result<Vec<Assignment>> {
        let apps: Vec<String> = match &self.spilled {
            Some(s) => s.apps.iter().map(|(a, _, _)| a.clone()).collect(),
            None => self.by_application.iter().map(|(a, _)| a.clone()).collect(),
        };
        let mut out = Vec::with_capacity(self.len());
        for app in apps {
            out.extend(self.of_application(&app)?);
        }
        Ok(out)
    }

    /// `records` as assignments. An index with no string behind it (a
    /// corrupt temporary file) is an error.
    fn unpack(&self, application: &str, records: &[Packed]) -> io::Result<Vec<Assignment>> {
        let file: Arc<str> = self.file.clone().unwrap_or_else(|| Arc::from(""));
        let string = |table: &'_ StrList, i: usize| -> io::Result<String> {
            table.get(i).map(str::to_owned).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a spilled assignment is corrupt",
                )
            })
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
        let mut d = DesiredAssignments::new(
            Arc::from("desired.json"),
            identities,
            entitlements,
            approvals,
            vec![
                ("crm".into(), records.clone()),
                ("erp".into(), records[1..].to_vec()),
            ],
        );
        let before = (d.all().unwrap(), d.of_application("erp").unwrap(), d.len());
        d.spill();
        assert!(d.spilled.is_some() && d.by_application.is_empty());
        let after = (d.all().unwrap(), d.of_application("erp").unwrap(), d.len());
        assert_eq!(before, after);
        assert_eq!(after.2, 3);
        assert!(d.of_application("nope").unwrap().is_empty());
        assert_eq!(after.0[0].approval.as_deref(), Some("APR-1"));
    }
}
