//! Boundary tests of every shipped policy: each fires just over its target and
//! not exactly at it (status rules: one firing and one non-firing case). The
//! subjects are built in code with [`Builder`], so a test shows exactly the
//! facts a rule decides on.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone, Utc};

use crate::ingest::model::{
    Application, Identity, IdentityKind, IdentityStatus, Operation, SourceRef,
};
use crate::policy::{evaluate, EvaluateOptions, PolicyPack};
use crate::reconcile::model::{
    AccountState, AssignmentState, AssignmentStatus, Change, ChangeStatus, ConnectorHealth,
    EventStats, Grant, GrantPath, GrantStatus, Reconciled, SnapshotFreshness,
};
use crate::time::{Span, Timestamp};

const APP: &str = "app";
const CONNECTOR: &str = "conn";
const MS: i64 = 1;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn as_of() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn ago(ms: i64) -> Timestamp {
    as_of() - Duration::milliseconds(ms)
}

fn source() -> SourceRef {
    SourceRef {
        file: "test".into(),
        line: 1,
        sha256: Default::default(),
    }
}

/// A minimal [`Reconciled`]: one application of `tier`, a person and a
/// service account, a connector that was just heard from, and a fresh
/// snapshot. It is compliant until a test adds a subject.
struct Builder {
    r: Reconciled,
}

impl Builder {
    fn new(tier: &str) -> Self {
        let identity = |id: &str, kind: IdentityKind, status: IdentityStatus| Identity {
            id: id.to_owned(),
            display_name: None,
            owner: (!kind.is_human()).then(|| "alice".to_owned()),
            kind,
            status,
            accounts: BTreeMap::new(),
            source: source(),
        };
        Builder {
            r: Reconciled {
                as_of: as_of(),
                collection: "unit".into(),
                collected_at: as_of(),
                inputs: Vec::new(),
                applications: vec![Application {
                    id: APP.into(),
                    name: APP.into(),
                    tier: tier.into(),
                    connector: CONNECTOR.into(),
                }],
                identities: vec![
                    identity("alice", IdentityKind::Human, IdentityStatus::Active),
                    identity("bob", IdentityKind::Human, IdentityStatus::Terminated),
                    identity("svc", IdentityKind::ServiceAccount, IdentityStatus::Active),
                ],
                events: EventStats::default(),
                changes: Vec::new(),
                grants: Vec::new(),
                assignments: Vec::new(),
                accounts: Vec::new(),
                drift: Vec::new(),
                connectors: vec![ConnectorHealth {
                    id: CONNECTOR.into(),
                    applications: vec![APP.into()],
                    last_heartbeat: Some(as_of()),
                    last_seen: Some(as_of()),
                    silence: Some(Span::from_millis(0)),
                    errors: 0,
                    last_error_at: None,
                    last_error: None,
                    failed_attempts: 0,
                    pending_changes: 0,
                    failed_changes: 0,
                    evidence: Vec::new(),
                }],
                snapshots: vec![SnapshotFreshness {
                    application: APP.into(),
                    format: "scim".into(),
                    taken_at: as_of(),
                    age: Span::from_millis(0),
                    files: Vec::new(),
                    accounts: 0,
                    groups: 0,
                }],
                anomalies: Vec::new(),
                rejected: Vec::new(),
            },
        }
    }

    /// A change requested `requested_ms_ago`; confirmed after `latency_ms` or
    /// left `status` (then pending since the request).
    fn change(mut self, op: Operation, status: ChangeStatus, span_ms: i64) -> Self {
        let confirmed = status == ChangeStatus::Confirmed;
        let requested_at = ago(span_ms + if confirmed { HOUR } else { 0 });
        self.r.changes.push(Change {
            key: "chg-1".into(),
            operation: op,
            identity: "alice".into(),
            application: APP.into(),
            entitlement: (!op.is_account_level()).then(|| "ent".to_owned()),
            requester: None,
            approval: None,
            ticket: None,
            batch: None,
            requested_at,
            status,
            confirmed_at: confirmed.then(|| requested_at + Duration::milliseconds(span_ms)),
            confirm_method: None,
            failed_at: (status == ChangeStatus::Failed).then(as_of),
            failure_reason: None,
            latency: confirmed.then(|| Span::from_millis(span_ms)),
            pending_for: (!confirmed).then(|| Span::from_millis(span_ms)),
            attempts: 1,
            last_outcome: None,
            last_error: None,
            redeliveries: 0,
            evidence: vec![source()],
        });
        self
    }

    /// An effective grant held by `identity` through `groups` (empty: direct).
    fn grant(
        mut self,
        identity: &str,
        status: GrantStatus,
        age_ms: Option<i64>,
        groups: &[&str],
    ) -> Self {
        self.r.grants.push(Grant {
            application: APP.into(),
            account: identity.into(),
            identity: Some(identity.into()),
            entitlement: "ent".into(),
            paths: vec![GrantPath {
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            }],
            status,
            granted_at: age_ms.map(ago),
            expires_at: None,
            age: age_ms.map(Span::from_millis),
            removal: None,
            evidence: vec![source()],
        });
        self
    }

    fn assignment(mut self, status: AssignmentStatus) -> Self {
        self.r.assignments.push(AssignmentState {
            identity: "alice".into(),
            application: APP.into(),
            entitlement: "ent".into(),
            granted_at: ago(DAY),
            expires_at: None,
            status,
            change: None,
            evidence: vec![source()],
        });
        self
    }

    fn account(mut self, identity: Option<&str>) -> Self {
        self.r.accounts.push(AccountState {
            application: APP.into(),
            account: "acct".into(),
            identity: identity.map(str::to_owned),
            active: true,
            entitlements: 1,
            evidence: vec![source()],
        });
        self
    }

    /// The connector was last heard from `silence_ms` ago.
    fn silence(mut self, silence_ms: i64) -> Self {
        let c = &mut self.r.connectors[0];
        c.last_seen = Some(ago(silence_ms));
        c.last_heartbeat = c.last_seen;
        c.silence = Some(Span::from_millis(silence_ms));
        self
    }

    /// The connector's last error was `ms` ago.
    fn error_ago(mut self, ms: i64) -> Self {
        let c = &mut self.r.connectors[0];
        c.errors = 1;
        c.last_error_at = Some(ago(ms));
        c.last_error = Some("boom".into());
        self
    }

    fn snapshot_age(mut self, ms: i64) -> Self {
        let s = &mut self.r.snapshots[0];
        s.taken_at = ago(ms);
        s.age = Span::from_millis(ms);
        self
    }

    /// The policy ids that fired.
    fn fired(self) -> BTreeSet<String> {
        let pack = PolicyPack::builtin().compile().unwrap();
        evaluate(&self.r, &pack, EvaluateOptions::default())
            .unwrap()
            .findings
            .into_iter()
            .map(|f| f.policy_id)
            .collect()
    }
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `build(target)` fires nothing; `build(target + 1 ms)` fires exactly `policy`.
fn assert_boundary(policy: &str, target: i64, build: impl Fn(i64) -> Builder) {
    assert_eq!(
        build(target).fired(),
        ids(&[]),
        "{policy} fired exactly at its target"
    );
    assert_eq!(
        build(target + MS).fired(),
        ids(&[policy]),
        "{policy} just over its target"
    );
}

#[test]
fn baseline_builder_is_compliant() {
    assert!(Builder::new("critical").fired().is_empty());
}

#[test]
fn sync_latency_fires_just_over_max_sync_latency() {
    assert_boundary("sync-latency", 15 * MINUTE, |ms| {
        Builder::new("critical").change(Operation::Grant, ChangeStatus::Confirmed, ms)
    });
    assert_boundary("sync-latency", HOUR, |ms| {
        Builder::new("high").change(Operation::AccountCreate, ChangeStatus::Confirmed, ms)
    });
}

#[test]
fn sync_latency_ignores_removals() {
    let fired = Builder::new("critical")
        .change(Operation::Revoke, ChangeStatus::Confirmed, 30 * MINUTE)
        .fired();
    assert_eq!(fired, ids(&[]));
}

#[test]
fn sync_overdue_fires_just_over_max_sync_latency_while_pending() {
    assert_boundary("sync-overdue", 15 * MINUTE, |ms| {
        Builder::new("critical").change(Operation::Grant, ChangeStatus::Pending, ms)
    });
    assert_boundary("sync-overdue", 4 * HOUR, |ms| {
        Builder::new("medium").change(Operation::Update, ChangeStatus::Pending, ms)
    });
}

#[test]
fn revocation_unconfirmed_fires_just_over_the_revocation_window() {
    // Confirmed late.
    assert_boundary("revocation-unconfirmed", HOUR, |ms| {
        Builder::new("critical").change(Operation::Revoke, ChangeStatus::Confirmed, ms)
    });
    // Still pending.
    assert_boundary("revocation-unconfirmed", HOUR, |ms| {
        Builder::new("critical").change(Operation::AccountDisable, ChangeStatus::Pending, ms)
    });
    assert_boundary("revocation-unconfirmed", 72 * HOUR, |ms| {
        Builder::new("low").change(Operation::AccountDelete, ChangeStatus::Pending, ms)
    });
}

#[test]
fn failed_revocation_fires_change_failed_and_revocation_unconfirmed() {
    let at = Builder::new("critical")
        .change(Operation::Revoke, ChangeStatus::Failed, HOUR)
        .fired();
    assert_eq!(at, ids(&["change-failed"]));
    let over = Builder::new("critical")
        .change(Operation::Revoke, ChangeStatus::Failed, HOUR + MS)
        .fired();
    assert_eq!(over, ids(&["change-failed", "revocation-unconfirmed"]));
}

#[test]
fn change_failed_fires_on_failed_status_only() {
    let failed = Builder::new("high")
        .change(Operation::Grant, ChangeStatus::Failed, MINUTE)
        .fired();
    assert_eq!(failed, ids(&["change-failed"]));
    let confirmed = Builder::new("high")
        .change(Operation::Grant, ChangeStatus::Confirmed, MINUTE)
        .fired();
    assert_eq!(confirmed, ids(&[]));
}

#[test]
fn grant_age_fires_just_over_max_grant_age() {
    assert_boundary("grant-age", 90 * DAY, |ms| {
        Builder::new("critical").grant("alice", GrantStatus::Desired, Some(ms), &[])
    });
    assert_boundary("grant-age", 730 * DAY, |ms| {
        Builder::new("low").grant("alice", GrantStatus::Desired, Some(ms), &[])
    });
}

#[test]
fn grant_age_needs_a_known_age_and_a_desired_grant() {
    let unknown = Builder::new("critical")
        .grant("alice", GrantStatus::Desired, None, &[])
        .fired();
    assert_eq!(unknown, ids(&[]));
    let not_desired = Builder::new("critical")
        .grant("bob", GrantStatus::NotRevoked, Some(365 * DAY), &[])
        .fired();
    assert_eq!(not_desired, ids(&["not-revoked"]));
}

#[test]
fn connector_silent_fires_just_over_the_heartbeat_window() {
    assert_boundary("connector-silent", 15 * MINUTE, |ms| {
        Builder::new("critical").silence(ms)
    });
    assert_boundary("connector-silent", 24 * HOUR, |ms| {
        Builder::new("low").silence(ms)
    });
}

#[test]
fn connector_never_seen_is_silent() {
    let mut b = Builder::new("critical");
    let c = &mut b.r.connectors[0];
    c.last_seen = None;
    c.last_heartbeat = None;
    c.silence = None;
    assert_eq!(b.fired(), ids(&["connector-silent"]));
}

#[test]
fn connector_failing_counts_an_error_exactly_one_window_old() {
    // Inclusive: `since_last_error_ms <= heartbeat_window`.
    let at = Builder::new("critical").error_ago(15 * MINUTE).fired();
    assert_eq!(at, ids(&["connector-failing"]));
    let over = Builder::new("critical").error_ago(15 * MINUTE + MS).fired();
    assert_eq!(over, ids(&[]));
    let medium = Builder::new("medium").error_ago(6 * HOUR).fired();
    assert_eq!(medium, ids(&["connector-failing"]));
}

#[test]
fn snapshot_stale_fires_just_over_max_snapshot_age() {
    assert_boundary("snapshot-stale", 24 * HOUR, |ms| {
        Builder::new("critical").snapshot_age(ms)
    });
    assert_boundary("snapshot-stale", 30 * DAY, |ms| {
        Builder::new("low").snapshot_age(ms)
    });
}

#[test]
fn not_revoked_fires_on_not_revoked_grants_only() {
    let fired = Builder::new("high")
        .grant("bob", GrantStatus::NotRevoked, None, &["g1", "g2", "g3"])
        .fired();
    assert_eq!(fired, ids(&["not-revoked"]));
    let after_snapshot = Builder::new("high")
        .grant("alice", GrantStatus::RevokedAfterSnapshot, None, &[])
        .fired();
    assert_eq!(after_snapshot, ids(&[]));
}

#[test]
fn unauthorized_access_fires_on_unauthorized_grants_only() {
    let fired = Builder::new("medium")
        .grant("alice", GrantStatus::Unauthorized, None, &[])
        .fired();
    assert_eq!(fired, ids(&["unauthorized-access"]));
    let desired = Builder::new("medium")
        .grant("alice", GrantStatus::Desired, Some(DAY), &[])
        .fired();
    assert_eq!(desired, ids(&[]));
}

#[test]
fn expired_grant_fires_on_expired_still_effective_only() {
    let fired = Builder::new("high")
        .grant("alice", GrantStatus::ExpiredStillEffective, Some(DAY), &[])
        .fired();
    assert_eq!(fired, ids(&["expired-grant"]));
    let desired = Builder::new("high")
        .grant("alice", GrantStatus::Desired, Some(DAY), &[])
        .fired();
    assert_eq!(desired, ids(&[]));
}

#[test]
fn orphan_account_fires_when_no_identity_stands_behind_it() {
    assert_eq!(
        Builder::new("critical").account(None).fired(),
        ids(&["orphan-account"])
    );
    assert_eq!(
        Builder::new("critical").account(Some("alice")).fired(),
        ids(&[])
    );
}

#[test]
fn missed_event_fires_on_unexplained_gaps_only() {
    assert_eq!(
        Builder::new("medium")
            .assignment(AssignmentStatus::MissedEvent)
            .fired(),
        ids(&["missed-event"])
    );
    for status in [
        AssignmentStatus::NotProvisioned,
        AssignmentStatus::Provisioned,
        AssignmentStatus::AfterSnapshot,
        AssignmentStatus::NotDesired,
    ] {
        assert_eq!(
            Builder::new("medium").assignment(status).fired(),
            ids(&[]),
            "{status:?}"
        );
    }
}

#[test]
fn nhi_controls_are_dropped_for_people_and_kept_for_service_accounts() {
    let pack = PolicyPack::builtin().compile().unwrap();
    let r = Builder::new("high")
        .grant("bob", GrantStatus::NotRevoked, None, &[])
        .grant("svc", GrantStatus::NotRevoked, None, &[])
        .r;
    let eval = evaluate(&r, &pack, EvaluateOptions::default()).unwrap();
    let controls: BTreeMap<String, Vec<String>> = eval
        .findings
        .into_iter()
        .map(|f| (f.subject.identity.unwrap_or_default(), f.controls))
        .collect();
    assert!(
        !controls["bob"].iter().any(|c| c.starts_with("NHI")),
        "{controls:?}"
    );
    assert!(
        controls["svc"].contains(&"NHI1:2025".to_owned()),
        "{controls:?}"
    );
}
