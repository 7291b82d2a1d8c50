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

use std::num::NonZeroU32;
use std::sync::Arc;

use super::digest::Sha256Digest;
use super::model::{Assignment, SourceRef};
use crate::time::Timestamp;

/// Strings stored one after another in one buffer, each found by its index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StrTable {
    text: String,
    /// Where each string ends in `text`.
    ends: Vec<usize>,
}

impl StrTable {
    /// Appends `s`; returns its index.
    pub(crate) fn push(&mut self, s: &str) -> usize {
        self.text.push_str(s);
        self.ends.push(self.text.len());
        self.ends.len() - 1
    }

    /// The string at index `i`.
    pub(crate) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Frees the room grown into but not used.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredAssignments {
    /// The desired-state file, for each record's [`SourceRef`].
    pub(crate) file: Option<Arc<str>>,
    /// Identity ids, sorted.
    pub(crate) identities: StrTable,
    /// Distinct entitlements, sorted.
    pub(crate) entitlements: StrTable,
    /// Approvals, in the order they were read.
    pub(crate) approvals: StrTable,
    /// Applications (sorted by id) with their records, sorted by
    /// (identity, entitlement); applications without assignments are left
    /// out.
    pub(crate) by_application: Vec<(String, Vec<Packed>)>,
}

impl DesiredAssignments {
    /// How many assignments there are.
    pub fn len(&self) -> usize {
        self.by_application.iter().map(|(_, v)| v.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The assignments in `application`, sorted by (identity, entitlement).
    pub fn of_application(&self, application: &str) -> Vec<Assignment> {
        match self
            .by_application
            .binary_search_by(|(app, _)| app.as_str().cmp(application))
        {
            Ok(i) => {
                let (app, records) = &self.by_application[i];
                self.unpack(app, records)
            }
            Err(_) => Vec::new(),
        }
    }

    /// Every assignment, sorted by (application, identity, entitlement).
    pub fn all(&self) -> Vec<Assignment> {
        let mut out = Vec::with_capacity(self.len());
        for (app, records) in &self.by_application {
            out.extend(self.unpack(app, records));
        }
        out
    }

    fn unpack(&self, application: &str, records: &[Packed]) -> Vec<Assignment> {
        let file: Arc<str> = self.file.clone().unwrap_or_else(|| Arc::from(""));
        records
            .iter()
            .map(|p| Assignment {
                identity: self.identities.get(p.identity as usize).to_owned(),
                application: application.to_owned(),
                entitlement: self.entitlements.get(p.entitlement as usize).to_owned(),
                granted_at: p.granted_at,
                expires_at: p.expires_at,
                approval: p
                    .approval
                    .map(|a| self.approvals.get(a.get() as usize - 1).to_owned()),
                source: SourceRef {
                    file: file.clone(),
                    line: p.line,
                    sha256: p.sha256,
                },
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
    fn a_string_table_gives_back_what_was_pushed() {
        let mut t = StrTable::default();
        assert_eq!(t.push("alice"), 0);
        assert_eq!(t.push(""), 1);
        assert_eq!(t.push("bob"), 2);
        assert_eq!((t.get(0), t.get(1), t.get(2)), ("alice", "", "bob"));
    }
}
