//! The ground truth written beside a generated collection
//! (`<DIR>.truth.json`): every (policy, subject) pair the planted violations
//! imply, and the drift and change counts reconciliation must report.
//!
//! It is derived from what the generator planted, never by running
//! syncproof, so it can be used to test syncproof.

use std::collections::BTreeMap;

use serde::Serialize;

/// Every shipped policy that can fire on a generated collection, in the
/// order the counts are listed.
pub(crate) const POLICIES: [&str; 13] = [
    "change-failed",
    "connector-failing",
    "connector-silent",
    "expired-grant",
    "grant-age",
    "missed-event",
    "not-revoked",
    "orphan-account",
    "revocation-unconfirmed",
    "snapshot-stale",
    "sync-latency",
    "sync-overdue",
    "unauthorized-access",
];

/// One expected finding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TruthFinding {
    /// The policy's `@id`.
    pub policy_id: String,
    /// The subject id (`change:<key>`, `grant:<app>/<account>/<entitlement>`, ...).
    pub subject: String,
}

/// Expected drift records by class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriftCounts {
    /// Still effective after revocation or leaving.
    pub not_revoked: u64,
    /// Effective, never approved.
    pub unauthorized: u64,
    /// Accounts with no identity.
    pub orphan_account: u64,
    /// Time-bounded access past its end, still effective.
    pub expired_still_effective: u64,
    /// Approved, absent, explained by a logged change.
    pub not_provisioned: u64,
    /// Approved, absent, unexplained.
    pub missed_event: u64,
}

/// Accumulation.
impl DriftCounts {
    /// Adds `other` into `self`.
    pub(crate) fn add(&mut self, other: &DriftCounts) {
        self.not_revoked += other.not_revoked;
        self.unauthorized += other.unauthorized;
        self.orphan_account += other.orphan_account;
        self.expired_still_effective += other.expired_still_effective;
        self.not_provisioned += other.not_provisioned;
        self.missed_event += other.missed_event;
    }
}

/// Expected changes by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    /// Confirmed in the target.
    pub confirmed: u64,
    /// Given up on by the connector.
    pub failed: u64,
    /// Neither.
    pub pending: u64,
}

/// Accumulation.
impl ChangeCounts {
    /// Adds `other` into `self`.
    pub(crate) fn add(&mut self, other: &ChangeCounts) {
        self.confirmed += other.confirmed;
        self.failed += other.failed;
        self.pending += other.pending;
    }
}

/// What the sync logs hold, beyond the spec'd truth fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LogCounts {
    /// The `--events` asked for.
    pub requested: u64,
    /// Lines that repeat an earlier line byte for byte in another file.
    pub replays: u64,
    /// Extra `change.requested` events under an already used idempotency key.
    pub redeliveries: u64,
}

/// The whole truth file.
#[derive(Clone, Debug, Serialize)]
pub struct Truth {
    /// The seed the collection was generated from.
    pub seed: u64,
    /// Sync-log lines written, replays included.
    pub events: u64,
    /// Every expected finding, sorted.
    pub findings: Vec<TruthFinding>,
    /// Findings per policy (every policy listed, zero included).
    pub counts: BTreeMap<String, u64>,
    /// Expected drift records per class.
    pub drift: DriftCounts,
    /// Expected changes per status.
    pub changes: ChangeCounts,
    /// Replays and re-deliveries written.
    pub log: LogCounts,
}

/// Construction.
impl Truth {
    /// Builds the truth from the accumulated pieces, sorting the findings and
    /// counting them per policy.
    pub(crate) fn new(
        seed: u64,
        events: u64,
        mut findings: Vec<TruthFinding>,
        drift: DriftCounts,
        changes: ChangeCounts,
        log: LogCounts,
    ) -> Truth {
        findings.sort();
        findings.dedup();
        let mut counts: BTreeMap<String, u64> =
            POLICIES.iter().map(|p| ((*p).to_owned(), 0)).collect();
        for f in &findings {
            *counts.entry(f.policy_id.clone()).or_default() += 1;
        }
        Truth {
            seed,
            events,
            findings,
            counts,
            drift,
            changes,
            log,
        }
    }
}
