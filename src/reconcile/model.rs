//! The reconciled state: what the policy stage evaluates and every report
//! shows. `syncproof reconcile --format json` prints this model as it is.

use std::sync::Arc;

use serde::Serialize;

use crate::ingest::model::{
    Application, AttemptOutcome, ConfirmMethod, Identity, InputFile, Operation, SourceRef,
};
use crate::ingest::Rejected;
use crate::time::{Span, Timestamp};

/// Everything reconciliation computed for one collection at one instant.
#[derive(Clone, Debug, Serialize)]
pub struct Reconciled {
    /// The instant the state is evaluated at.
    #[serde(with = "crate::time::rfc3339")]
    pub as_of: Timestamp,
    /// The collection's name.
    pub collection: String,
    /// When the collection was made.
    #[serde(with = "crate::time::rfc3339")]
    pub collected_at: Timestamp,
    /// Every input file with its digest.
    pub inputs: Vec<InputFile>,
    /// The applications, sorted by id.
    pub applications: Vec<Application>,
    /// The identities, sorted by id.
    pub identities: Vec<Identity>,
    /// Counts of what the sync logs held.
    pub events: EventStats,
    /// Every change, sorted by request time then key. Empty when the
    /// applications were reconciled and evaluated one at a time
    /// ([`crate::reconcile::prepare`]): each application's changes were read
    /// then, and only [`Reconciled::change_figures`] are kept.
    pub changes: Vec<Change>,
    /// What the summary needs of every change, by application id (sorted):
    /// kept whether or not the changes themselves are.
    #[serde(skip)]
    pub change_figures: Vec<(String, Vec<ChangeFigure>)>,
    /// Every effective grant in the targets, sorted.
    pub grants: Vec<Grant>,
    /// Every approved assignment and whether the target has it, sorted.
    pub assignments: Vec<AssignmentState>,
    /// Every account in the targets, sorted.
    pub accounts: Vec<AccountState>,
    /// One record per drift case, sorted.
    pub drift: Vec<Drift>,
    /// Health of each connector, sorted by id.
    pub connectors: Vec<ConnectorHealth>,
    /// Freshness of each snapshot, sorted by application.
    pub snapshots: Vec<SnapshotFreshness>,
    /// Things in the inputs that are not findings but deserve a look.
    pub anomalies: Vec<Anomaly>,
    /// Log lines set aside under `--quarantine`.
    pub rejected: Vec<Rejected>,
}

impl Reconciled {
    /// Each application's tier, by application id (ids are unique: the
    /// collection refuses one defined twice).
    pub fn tier_by_application(&self) -> crate::FastMap<&str, &str> {
        self.applications
            .iter()
            .map(|a| (a.id.as_str(), a.tier.as_str()))
            .collect()
    }
}

/// What the sync logs held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    /// Events read (valid lines).
    pub read: u64,
    /// Distinct events, by (`source`, `id`).
    pub unique: u64,
    /// Events whose (`source`, `id`) pair was already seen: counted once.
    pub replays: u64,
    /// Re-deliveries of a change under the same idempotency key.
    pub redeliveries: u64,
    /// Events dated after `--as-of`, left out of the evaluation.
    pub after_as_of: u64,
    /// Distinct events by type.
    pub by_type: std::collections::BTreeMap<String, u64>,
}

/// Where a change ended up at `--as-of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// Confirmed in the target (read back or the target's own event).
    Confirmed,
    /// The connector gave up.
    Failed,
    /// Neither: the change has not happened (a delivered but unconfirmed
    /// change is pending too).
    Pending,
}

impl ChangeStatus {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangeStatus::Confirmed => "confirmed",
            ChangeStatus::Failed => "failed",
            ChangeStatus::Pending => "pending",
        }
    }
}

/// One change from request to confirmation.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// The idempotency key that correlates its events.
    pub key: String,
    /// What was asked.
    pub operation: Operation,
    /// For whom. (The identity, application, entitlement, requester and
    /// batch of millions of changes repeat: each distinct value is stored
    /// once and shared.)
    pub identity: Arc<str>,
    /// In which application.
    pub application: Arc<str>,
    /// Which entitlement (absent for account-level operations).
    pub entitlement: Option<Arc<str>>,
    /// Who asked.
    pub requester: Option<Arc<str>>,
    /// Approval reference.
    pub approval: Option<String>,
    /// Ticket reference.
    pub ticket: Option<String>,
    /// Bulk-change id.
    pub batch: Option<Arc<str>>,
    /// When it was first requested.
    #[serde(with = "crate::time::rfc3339")]
    pub requested_at: Timestamp,
    /// Where it stands at `--as-of`.
    pub status: ChangeStatus,
    /// When it was first confirmed.
    #[serde(with = "crate::time::rfc3339::option")]
    pub confirmed_at: Option<Timestamp>,
    /// How.
    pub confirm_method: Option<ConfirmMethod>,
    /// When the connector gave up.
    #[serde(with = "crate::time::rfc3339::option")]
    pub failed_at: Option<Timestamp>,
    /// Why.
    pub failure_reason: Option<String>,
    /// Request to confirmation, when confirmed.
    pub latency: Option<Span>,
    /// Request to `--as-of`, when not confirmed.
    pub pending_for: Option<Span>,
    /// Distinct delivery attempts.
    pub attempts: u32,
    /// The last attempt's outcome.
    pub last_outcome: Option<AttemptOutcome>,
    /// The last attempt's error text.
    pub last_error: Option<String>,
    /// Extra `change.requested` events under the same key.
    pub redeliveries: u32,
    /// The log records behind it: request first, then attempts, then the
    /// confirmation or failure.
    pub evidence: Vec<SourceRef>,
}

/// What the summary and connector health need of one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeFigure {
    /// Where it stands.
    pub status: ChangeStatus,
    /// Whether it takes access away.
    pub removal: bool,
    /// Request to confirmation, when confirmed.
    pub latency: Option<Span>,
}

/// How an effective grant relates to the desired state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Approved, current and in place.
    Desired,
    /// Approved for a time that has passed; still effective.
    ExpiredStillEffective,
    /// No longer desired (revoked, or its identity disabled or terminated),
    /// still effective by some path.
    NotRevoked,
    /// Effective but never approved: a local grant or manual override.
    Unauthorized,
    /// Held by an account no identity stands behind.
    Orphan,
    /// In the snapshot, but a revocation confirmed after the snapshot was
    /// taken removed it: the snapshot predates the change.
    RevokedAfterSnapshot,
}

impl GrantStatus {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            GrantStatus::Desired => "desired",
            GrantStatus::ExpiredStillEffective => "expired_still_effective",
            GrantStatus::NotRevoked => "not_revoked",
            GrantStatus::Unauthorized => "unauthorized",
            GrantStatus::Orphan => "orphan",
            GrantStatus::RevokedAfterSnapshot => "revoked_after_snapshot",
        }
    }
}

/// One route by which an account holds an entitlement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GrantPath {
    /// Groups from the account outwards (empty: held directly).
    pub groups: Vec<String>,
}

impl GrantPath {
    /// `account → group → group → entitlement`.
    pub fn describe(&self, account: &str, entitlement: &str) -> String {
        let mut parts = vec![account.to_owned()];
        parts.extend(self.groups.iter().map(|g| format!("group {g}")));
        parts.push(entitlement.to_owned());
        parts.join(" → ")
    }
}

/// An entitlement that is effective in a target.
#[derive(Clone, Debug, Serialize)]
pub struct Grant {
    /// The application.
    pub application: String,
    /// The account that holds it.
    pub account: String,
    /// The identity behind the account, if any.
    pub identity: Option<String>,
    /// The entitlement.
    pub entitlement: String,
    /// Every route, direct first.
    pub paths: Vec<GrantPath>,
    /// How it relates to the desired state.
    pub status: GrantStatus,
    /// When it was approved (from the assignment).
    #[serde(with = "crate::time::rfc3339::option")]
    pub granted_at: Option<Timestamp>,
    /// When time-bounded access ends.
    #[serde(with = "crate::time::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    /// `--as-of` minus `granted_at`.
    pub age: Option<Span>,
    /// The latest change that asked for its removal, if any.
    pub removal: Option<String>,
    /// The snapshot records and assignment behind it.
    pub evidence: Vec<SourceRef>,
}

impl Grant {
    /// Whether it is held only through groups.
    pub fn is_via_group_only(&self) -> bool {
        self.paths.iter().all(|p| !p.groups.is_empty())
    }
}

/// Whether an approved assignment is in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentStatus {
    /// Effective in the target.
    Provisioned,
    /// Approved after the snapshot was taken: the snapshot cannot show it.
    AfterSnapshot,
    /// Not in the target; a logged change accounts for it.
    NotProvisioned,
    /// Not in the target, and no logged change accounts for it.
    MissedEvent,
    /// Not desired any more (expired, or its identity is not active).
    NotDesired,
}

impl AssignmentStatus {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AssignmentStatus::Provisioned => "provisioned",
            AssignmentStatus::AfterSnapshot => "after_snapshot",
            AssignmentStatus::NotProvisioned => "not_provisioned",
            AssignmentStatus::MissedEvent => "missed_event",
            AssignmentStatus::NotDesired => "not_desired",
        }
    }
}

/// An approved assignment and its state in the target.
#[derive(Clone, Debug, Serialize)]
pub struct AssignmentState {
    /// The identity.
    pub identity: String,
    /// The application.
    pub application: String,
    /// The entitlement.
    pub entitlement: String,
    /// Approved at.
    #[serde(with = "crate::time::rfc3339")]
    pub granted_at: Timestamp,
    /// Ends at.
    #[serde(with = "crate::time::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    /// Its state.
    pub status: AssignmentStatus,
    /// The change that accounts for a gap, if any.
    pub change: Option<String>,
    /// The assignment record.
    pub evidence: Vec<SourceRef>,
}

/// An account in a target.
#[derive(Clone, Debug, Serialize)]
pub struct AccountState {
    /// The application.
    pub application: String,
    /// The account name (SCIM `externalId` or `userName`; CSV account).
    pub account: String,
    /// The identity behind it, if any.
    pub identity: Option<String>,
    /// Whether the account is active.
    pub active: bool,
    /// Entitlements it holds effectively.
    pub entitlements: usize,
    /// The snapshot record.
    pub evidence: Vec<SourceRef>,
}

/// The kinds of drift between desired and effective access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// Approved, absent in the target; a logged change accounts for it.
    NotProvisioned,
    /// No longer desired, still effective by some path.
    NotRevoked,
    /// Effective, never approved.
    Unauthorized,
    /// An account with no identity behind it.
    OrphanAccount,
    /// Time-bounded access past its end, still effective.
    ExpiredStillEffective,
    /// A gap no logged change accounts for: a missed event.
    MissedEvent,
}

impl DriftClass {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriftClass::NotProvisioned => "not_provisioned",
            DriftClass::NotRevoked => "not_revoked",
            DriftClass::Unauthorized => "unauthorized",
            DriftClass::OrphanAccount => "orphan_account",
            DriftClass::ExpiredStillEffective => "expired_still_effective",
            DriftClass::MissedEvent => "missed_event",
        }
    }

    /// Every class, in report order.
    pub const ALL: [DriftClass; 6] = [
        DriftClass::NotRevoked,
        DriftClass::Unauthorized,
        DriftClass::OrphanAccount,
        DriftClass::ExpiredStillEffective,
        DriftClass::NotProvisioned,
        DriftClass::MissedEvent,
    ];
}

/// One drift case.
#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    /// What kind.
    pub class: DriftClass,
    /// The application.
    pub application: String,
    /// The identity, if any.
    pub identity: Option<String>,
    /// The account in the target, if any.
    pub account: Option<String>,
    /// The entitlement (absent for an orphan account as a whole).
    pub entitlement: Option<String>,
    /// The change that accounts for it, if any.
    pub change: Option<String>,
    /// One line for a person.
    pub detail: String,
    /// The records behind it.
    pub evidence: Vec<SourceRef>,
}

/// A connector's health at `--as-of`.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorHealth {
    /// The connector id.
    pub id: String,
    /// The applications it provisions.
    pub applications: Vec<String>,
    /// Its last heartbeat.
    #[serde(with = "crate::time::rfc3339::option")]
    pub last_heartbeat: Option<Timestamp>,
    /// Its last event of any kind (heartbeat, error, or a change event for
    /// one of its applications).
    #[serde(with = "crate::time::rfc3339::option")]
    pub last_seen: Option<Timestamp>,
    /// `--as-of` minus `last_seen`; none if never seen.
    pub silence: Option<Span>,
    /// Connector errors logged.
    pub errors: u64,
    /// Its last connector error.
    #[serde(with = "crate::time::rfc3339::option")]
    pub last_error_at: Option<Timestamp>,
    /// The last error's text.
    pub last_error: Option<String>,
    /// Failed delivery attempts.
    pub failed_attempts: u64,
    /// Changes not yet confirmed.
    pub pending_changes: u64,
    /// Changes it gave up on.
    pub failed_changes: u64,
    /// The last heartbeat and last error records.
    pub evidence: Vec<SourceRef>,
}

/// How old a snapshot is at `--as-of`.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotFreshness {
    /// The application.
    pub application: String,
    /// The format.
    pub format: String,
    /// When it was taken.
    #[serde(with = "crate::time::rfc3339")]
    pub taken_at: Timestamp,
    /// `--as-of` minus `taken_at`.
    pub age: Span,
    /// Its files.
    pub files: Vec<String>,
    /// Accounts in it.
    pub accounts: usize,
    /// Groups in it.
    pub groups: usize,
    /// Effective grants reconciled from it (a figure for the reports; not
    /// part of the serialised record).
    #[serde(skip)]
    pub grants: usize,
}

/// The kinds of anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// An attempt, confirmation or failure with no request.
    OrphanEvent,
    /// An event whose (`source`, `id`) was already seen: counted once.
    Replay,
    /// A replay whose content differs from the first copy.
    ConflictingReplay,
    /// A re-delivery under the same idempotency key asking for something else.
    IdempotencyConflict,
    /// A confirmation timed before its request.
    ConfirmedBeforeRequested,
}

impl AnomalyKind {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AnomalyKind::OrphanEvent => "orphan_event",
            AnomalyKind::Replay => "replay",
            AnomalyKind::ConflictingReplay => "conflicting_replay",
            AnomalyKind::IdempotencyConflict => "idempotency_conflict",
            AnomalyKind::ConfirmedBeforeRequested => "confirmed_before_requested",
        }
    }
}

/// Something in the inputs that deserves a look.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Anomaly {
    /// What kind.
    pub kind: AnomalyKind,
    /// The idempotency key or event id concerned.
    pub subject: String,
    /// One line for a person.
    pub detail: String,
    /// The records behind it.
    pub evidence: Vec<SourceRef>,
}
