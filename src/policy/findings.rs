//! The result of policy evaluation: findings, each tied to its policy, its
//! controls, its subject and the input records that prove it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ingest::model::SourceRef;

/// How serious a finding is. Ordered: `Low < Medium < High < Critical`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// All severities, most serious first.
    pub const DESCENDING: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of subject evaluated, one Cedar action each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A change from request to confirmation.
    Change,
    /// An effective grant held by a known identity.
    Grant,
    /// An approved assignment.
    Assignment,
    /// An account in a target.
    Account,
    /// A connector.
    Connector,
    /// An application's snapshot.
    Snapshot,
}

impl SubjectKind {
    /// The Cedar action id and subject-id prefix.
    pub fn as_str(&self) -> &'static str {
        match self {
            SubjectKind::Change => "change",
            SubjectKind::Grant => "grant",
            SubjectKind::Assignment => "assignment",
            SubjectKind::Account => "account",
            SubjectKind::Connector => "connector",
            SubjectKind::Snapshot => "snapshot",
        }
    }

    /// Every kind, in evaluation order.
    pub const ALL: [SubjectKind; 6] = [
        SubjectKind::Change,
        SubjectKind::Grant,
        SubjectKind::Assignment,
        SubjectKind::Account,
        SubjectKind::Connector,
        SubjectKind::Snapshot,
    ];
}

/// What a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    /// Which kind of subject.
    pub kind: SubjectKind,
    /// Stable id: `change:<key>`, `grant:<app>/<account>/<entitlement>`,
    /// `assignment:<app>/<identity>/<entitlement>`, `account:<app>/<account>`,
    /// `connector:<id>`, `snapshot:<app>`.
    pub id: String,
    /// The identity concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Its kind (`human`, `service_account`, ...), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_kind: Option<String>,
    /// The application, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The entitlement, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// The account in the target, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The connector, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// The tier whose targets applied.
    pub tier: String,
}

impl Subject {
    /// Whether the subject is a known non-human identity (OWASP NHI controls
    /// may be claimed only then).
    pub fn is_non_human(&self) -> bool {
        self.identity_kind.as_deref().is_some_and(|k| k != "human")
    }
}

/// An exception that covers a finding (see `docs/formats.md`, exceptions).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppliedException {
    /// The exception's id.
    pub id: String,
    /// Why the risk is accepted.
    pub justification: String,
    /// Who approved it.
    pub approver: String,
    /// Ticket reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// When it was granted.
    pub granted_at: String,
    /// When it expires.
    pub expires_at: String,
}

/// One failing control for one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The policy's `@id`.
    pub policy_id: String,
    /// The policy's `@severity`.
    pub severity: Severity,
    /// The policy's `@title`.
    pub title: String,
    /// Controls claimed (OWASP NHI only for non-human subjects).
    pub controls: Vec<String>,
    /// What it is about.
    pub subject: Subject,
    /// The facts that decided it, for a person.
    pub facts: String,
    /// The request context Cedar saw.
    pub context: serde_json::Value,
    /// The input records behind it.
    pub evidence: Vec<SourceRef>,
    /// The policy's `@remediation`.
    pub remediation: String,
    /// The live exception covering it, if any: then it does not fail the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<AppliedException>,
}

impl Finding {
    /// Whether a live exception covers it.
    pub fn is_excepted(&self) -> bool {
        self.exception.is_some()
    }

    /// The deterministic order of findings: most severe first, then policy,
    /// then subject.
    pub fn sort_key(&self) -> (std::cmp::Reverse<Severity>, &str, &str) {
        (
            std::cmp::Reverse(self.severity),
            self.policy_id.as_str(),
            self.subject.id.as_str(),
        )
    }
}

/// How many subjects each policy evaluated and how many it failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTally {
    /// Subjects the policy applies to (by its action scope). This counts
    /// the subjects whose request left the policy out because a leading
    /// guard was false (see [`super::slice`]): the policy was decided for
    /// them too, as provably not satisfied.
    pub evaluated: u64,
    /// Subjects it forbade.
    pub failed: u64,
}

/// Everything policy evaluation produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evaluation {
    /// Subjects evaluated, by kind.
    pub subjects: BTreeMap<SubjectKind, u64>,
    /// Per policy id.
    pub policies: BTreeMap<String, PolicyTally>,
    /// Findings, sorted by [`Finding::sort_key`].
    pub findings: Vec<Finding>,
    /// Every subject evaluated, by kind, sorted, in a temporary file (kept
    /// only when asked: JUnit lists passing subjects too).
    #[serde(skip)]
    pub evaluated: super::subjects::SubjectLists,
    /// Time spent inside Cedar's authorizer (`is_authorized_core`, the
    /// evaluation `is_authorized` wraps), summed over threads (for
    /// `--timings`; never written to an output).
    #[serde(skip)]
    pub cedar_time: std::time::Duration,
    /// Time spent evaluating (building entity stores and requests, and
    /// deciding them, Cedar included), summed over threads; for `--timings`.
    #[serde(skip)]
    pub eval_time: std::time::Duration,
}
