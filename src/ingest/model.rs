//! The validated, typed records that ingest hands to reconciliation.
//!
//! Every record carries a [`SourceRef`] naming the file, line and SHA-256 of the
//! exact bytes it came from, so any finding can point an auditor back at the
//! input that proves it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::{Span, Timestamp};

/// Where a record came from: a collection-relative path, a 1-based line, and
/// the SHA-256 (hex) of that record's bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    /// Path relative to the collection root, with `/` separators.
    pub file: Arc<str>,
    /// 1-based line number (0 when the record has no single line).
    pub line: u64,
    /// SHA-256 of the record's bytes (a JSON line, a CSV row, a SCIM resource).
    pub sha256: crate::ingest::digest::Sha256Digest,
}

impl SourceRef {
    /// `file:line`, or just `file` when the record is a whole file (line 0).
    pub fn location(&self) -> String {
        if self.line > 0 {
            format!("{}:{}", self.file, self.line)
        } else {
            self.file.to_string()
        }
    }
}

/// A sensitivity tier name (`critical`, `high`, `medium`, `low`, or any tier
/// defined in `tiers.yaml`).
pub type TierName = String;

/// The targets a tier sets, from `tiers.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierTargets {
    /// Longest acceptable time from change request to confirmation.
    pub max_sync_latency: Span,
    /// Longest acceptable time from revocation request to its confirmation.
    pub revocation_window: Span,
    /// Oldest a grant may be before it must be re-approved.
    pub max_grant_age: Span,
    /// Longest a connector may stay silent (no heartbeat, no event).
    pub heartbeat_window: Span,
    /// Oldest an observed snapshot may be for a review to rely on it.
    pub max_snapshot_age: Span,
    /// Longest an approved exception may last for this tier, if capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_exception: Option<Span>,
}

/// The kind of an identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A person.
    Human,
    /// A service account.
    ServiceAccount,
    /// An API key or token.
    ApiKey,
    /// A bot or automation identity.
    Bot,
    /// A workload identity (pod, function, VM).
    Workload,
}

impl IdentityKind {
    /// Whether this is a non-human identity (the OWASP NHI Top 10 applies).
    pub fn is_human(&self) -> bool {
        matches!(self, IdentityKind::Human)
    }

    /// The snake_case name used in files and in Cedar.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdentityKind::Human => "human",
            IdentityKind::ServiceAccount => "service_account",
            IdentityKind::ApiKey => "api_key",
            IdentityKind::Bot => "bot",
            IdentityKind::Workload => "workload",
        }
    }
}

/// The governance system's view of an identity's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityStatus {
    /// Active: its approved assignments are desired.
    Active,
    /// Suspended or disabled: none of its access is desired.
    Disabled,
    /// Left the organisation / decommissioned: none of its access is desired.
    Terminated,
}

impl IdentityStatus {
    /// The snake_case name used in files and in Cedar.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdentityStatus::Active => "active",
            IdentityStatus::Disabled => "disabled",
            IdentityStatus::Terminated => "terminated",
        }
    }
}

/// An identity from the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Governance-system id, unique in the collection.
    pub id: String,
    /// Display name, if given.
    pub display_name: Option<String>,
    /// Human or which kind of non-human identity.
    pub kind: IdentityKind,
    /// The accountable owner (required for non-human identities).
    pub owner: Option<String>,
    /// Lifecycle status.
    pub status: IdentityStatus,
    /// Account name per application, when it differs from `id`.
    pub accounts: BTreeMap<String, String>,
    /// Where it was defined.
    pub source: SourceRef,
}

/// An approved assignment from the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The identity it is assigned to.
    pub identity: String,
    /// The application.
    pub application: String,
    /// The entitlement (SCIM entitlement or role value, or CSV entitlement).
    pub entitlement: String,
    /// When it was approved and granted.
    #[serde(with = "crate::time::rfc3339")]
    pub granted_at: Timestamp,
    /// When time-bounded access ends.
    #[serde(with = "crate::time::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    /// Approval or ticket reference.
    pub approval: Option<String>,
    /// Where it was defined.
    pub source: SourceRef,
}

/// The operation a change request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Grant an entitlement.
    Grant,
    /// Revoke an entitlement.
    Revoke,
    /// Change an existing grant or account attribute.
    Update,
    /// Create an account.
    AccountCreate,
    /// Disable an account.
    AccountDisable,
    /// Delete an account.
    AccountDelete,
}

impl Operation {
    /// Whether the operation removes access (fail-closed rules apply).
    pub fn is_removal(&self) -> bool {
        matches!(
            self,
            Operation::Revoke | Operation::AccountDisable | Operation::AccountDelete
        )
    }

    /// Whether the operation acts on a whole account rather than one entitlement.
    pub fn is_account_level(&self) -> bool {
        matches!(
            self,
            Operation::AccountCreate | Operation::AccountDisable | Operation::AccountDelete
        )
    }

    /// The snake_case name used in files and in Cedar.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Grant => "grant",
            Operation::Revoke => "revoke",
            Operation::Update => "update",
            Operation::AccountCreate => "account_create",
            Operation::AccountDisable => "account_disable",
            Operation::AccountDelete => "account_delete",
        }
    }
}

/// The outcome of one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The target accepted the call (not a confirmation).
    Success,
    /// The call failed and will be retried.
    RetryableError,
    /// The call failed permanently.
    Error,
}

/// How a change was confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmMethod {
    /// The connector read the state back from the target.
    ReadBack,
    /// The target emitted its own event.
    TargetEvent,
}

/// What a `change.requested` event asks, after validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// What to do.
    pub operation: Operation,
    /// The identity the change is for.
    pub identity: String,
    /// The target application.
    pub application: String,
    /// The entitlement (absent for account-level operations).
    pub entitlement: Option<String>,
    /// Who asked.
    pub requester: Option<String>,
    /// Approval reference.
    pub approval: Option<String>,
    /// Ticket reference.
    pub ticket: Option<String>,
    /// Bulk-change id, when part of one.
    pub batch: Option<String>,
}

/// What one sync-log event says, after validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A change was requested of a connector.
    ChangeRequested {
        /// Correlates every event of one change; re-deliveries reuse it.
        idempotency_key: String,
        /// What is asked.
        #[serde(flatten)]
        request: ChangeRequest,
    },
    /// The connector tried to deliver a change.
    DeliveryAttempted {
        /// The change.
        idempotency_key: String,
        /// 1-based attempt number.
        attempt: u32,
        /// What happened.
        outcome: AttemptOutcome,
        /// Error text for failed attempts.
        error: Option<String>,
    },
    /// The change was confirmed in the target.
    ChangeConfirmed {
        /// The change.
        idempotency_key: String,
        /// How it was confirmed.
        method: ConfirmMethod,
    },
    /// The connector gave up on the change.
    ChangeFailed {
        /// The change.
        idempotency_key: String,
        /// Why.
        reason: String,
    },
    /// The connector is alive.
    Heartbeat {
        /// Which connector.
        connector: String,
    },
    /// The connector reported an error not tied to one change.
    ConnectorError {
        /// Which connector.
        connector: String,
        /// Error text.
        error: String,
    },
}

/// One validated sync-log event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// CloudEvents `source`.
    pub ce_source: String,
    /// CloudEvents `id`.
    pub ce_id: String,
    /// CloudEvents `time`, in UTC.
    #[serde(with = "crate::time::rfc3339")]
    pub time: Timestamp,
    /// The validated payload.
    pub body: EventBody,
    /// Where it came from.
    pub source: SourceRef,
}

/// How an observed account or group member holds an entitlement.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObservedAccount {
    /// The key that ties it to an identity: SCIM `externalId`, else `userName`;
    /// the CSV account column.
    pub name: String,
    /// SCIM resource id (equal to `name` for CSV).
    pub target_id: String,
    /// Whether the account is active (SCIM `active`, default true).
    pub active: bool,
    /// Entitlements held directly.
    pub direct: Vec<String>,
    /// Where it came from.
    pub source: SourceRef,
}

/// A group in the target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObservedGroup {
    /// SCIM group id (CSV: the group name).
    pub target_id: String,
    /// Display name.
    pub display_name: String,
    /// Entitlements the group grants to all its transitive members.
    pub entitlements: Vec<String>,
    /// Account target ids that are direct members.
    pub member_accounts: Vec<String>,
    /// Group target ids that are direct members (nested groups).
    pub member_groups: Vec<String>,
    /// Where it came from.
    pub source: SourceRef,
}

/// One application's observed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The application.
    pub application: String,
    /// When it was taken.
    #[serde(with = "crate::time::rfc3339")]
    pub taken_at: Timestamp,
    /// `scim` or `csv`.
    pub format: String,
    /// Files it was read from.
    pub files: Vec<String>,
    /// Accounts, sorted by target id.
    pub accounts: Vec<ObservedAccount>,
    /// Groups, sorted by target id.
    pub groups: Vec<ObservedGroup>,
}

/// An application named in `collection.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Application {
    /// Id used by events, desired state and snapshots.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Sensitivity tier.
    pub tier: TierName,
    /// The connector that provisions it.
    pub connector: String,
}

/// A file of the collection with its digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputFile {
    /// Path relative to the collection root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// What the manifest says it is (`manifest`, `sync_log`, `desired_state`,
    /// `snapshot`, `exceptions`).
    pub kind: String,
}
