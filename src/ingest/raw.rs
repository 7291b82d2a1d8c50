//! The on-disk shapes of `collection.yaml`, the desired state and the
//! sync-log payloads, exactly as users write them (see `docs/formats.md`).
//!
//! These types only describe syntax; [`super::load`] turns them into the
//! validated records of [`super::model`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{AttemptOutcome, ConfirmMethod, IdentityKind, IdentityStatus, Operation};

/// `collection.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCollection {
    /// Format version; must be 1.
    pub(crate) version: u32,
    /// A name for the assessment.
    pub(crate) name: String,
    /// When the collection was made (the default `--as-of`).
    pub(crate) collected_at: String,
    /// The applications assessed.
    pub(crate) applications: Vec<RawApplication>,
    /// Sync-log files (JSON Lines of CloudEvents), in any order.
    pub(crate) sync_logs: Vec<String>,
    /// The governance system's desired state (YAML or JSON).
    pub(crate) desired_state: String,
    /// Approved exceptions (optional).
    #[serde(default)]
    pub(crate) exceptions: Option<String>,
}

/// One application in `collection.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApplication {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) tier: String,
    pub(crate) connector: String,
    pub(crate) snapshot: RawSnapshotSpec,
}

/// Where an application's observed state is and how to read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSnapshotSpec {
    /// `scim` or `csv`.
    pub(crate) format: String,
    /// The snapshot's files.
    pub(crate) files: Vec<String>,
    /// When the snapshot was taken.
    pub(crate) taken_at: String,
    /// CSV column mapping (required for `csv`).
    #[serde(default)]
    pub(crate) columns: Option<RawCsvColumns>,
}

/// CSV column names for a legacy export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCsvColumns {
    pub(crate) account: String,
    pub(crate) entitlement: String,
    #[serde(default)]
    pub(crate) group: Option<String>,
    #[serde(default)]
    pub(crate) active: Option<String>,
}

/// An identity in the desired state.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    pub(crate) kind: IdentityKind,
    #[serde(default)]
    pub(crate) owner: Option<String>,
    pub(crate) status: IdentityStatus,
    #[serde(default)]
    pub(crate) accounts: BTreeMap<String, String>,
}

/// An assignment in the desired state. Its strings borrow from the
/// document's text where they can (no escapes), since there may be
/// millions.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssignment<'a> {
    #[serde(borrow)]
    pub(crate) identity: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) application: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) entitlement: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) granted_at: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) expires_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) approval: Option<Cow<'a, str>>,
}

impl RawAssignment<'_> {
    /// The same assignment, holding its own strings.
    pub(crate) fn into_owned(self) -> RawAssignment<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        RawAssignment {
            identity: own(self.identity),
            application: own(self.application),
            entitlement: own(self.entitlement),
            granted_at: own(self.granted_at),
            expires_at: self.expires_at.map(own),
            approval: self.approval.map(own),
        }
    }
}

/// `data` of `dev.syncproof.change.requested`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChangeRequested {
    pub(crate) idempotency_key: String,
    pub(crate) operation: Operation,
    pub(crate) identity: String,
    pub(crate) application: String,
    #[serde(default)]
    pub(crate) entitlement: Option<String>,
    #[serde(default)]
    pub(crate) requester: Option<String>,
    #[serde(default)]
    pub(crate) approval: Option<String>,
    #[serde(default)]
    pub(crate) ticket: Option<String>,
    #[serde(default)]
    pub(crate) batch: Option<String>,
}

/// `data` of `dev.syncproof.change.attempted`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttempted {
    pub(crate) idempotency_key: String,
    pub(crate) attempt: u32,
    pub(crate) outcome: AttemptOutcome,
    #[serde(default)]
    pub(crate) error: Option<String>,
}

/// `data` of `dev.syncproof.change.confirmed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfirmed {
    pub(crate) idempotency_key: String,
    pub(crate) method: ConfirmMethod,
}

/// `data` of `dev.syncproof.change.failed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailed {
    pub(crate) idempotency_key: String,
    pub(crate) reason: String,
}

/// `data` of `dev.syncproof.connector.heartbeat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeartbeat {
    pub(crate) connector: String,
}

/// `data` of `dev.syncproof.connector.error`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnectorError {
    pub(crate) connector: String,
    pub(crate) error: String,
}

/// The event types syncproof understands.
pub(crate) mod event_type {
    /// A change was requested.
    pub(crate) const CHANGE_REQUESTED: &str = "dev.syncproof.change.requested";
    /// A delivery attempt.
    pub(crate) const CHANGE_ATTEMPTED: &str = "dev.syncproof.change.attempted";
    /// Confirmation read back from the target.
    pub(crate) const CHANGE_CONFIRMED: &str = "dev.syncproof.change.confirmed";
    /// The connector gave up.
    pub(crate) const CHANGE_FAILED: &str = "dev.syncproof.change.failed";
    /// Connector heartbeat.
    pub(crate) const HEARTBEAT: &str = "dev.syncproof.connector.heartbeat";
    /// Connector error.
    pub(crate) const CONNECTOR_ERROR: &str = "dev.syncproof.connector.error";
    /// All of them, for error messages.
    pub(crate) const ALL: [&str; 6] = [
        CHANGE_REQUESTED,
        CHANGE_ATTEMPTED,
        CHANGE_CONFIRMED,
        CHANGE_FAILED,
        HEARTBEAT,
        CONNECTOR_ERROR,
    ];
}
