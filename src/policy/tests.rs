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
                change_figures: Vec::new(),
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
                    grants: 0,
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
            entitlement: (!op.is_account_level()).then(|| "ent".into()),
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

// ---------------------------------------------------------------------------
// Slicing by leading guards: extraction, and equivalence with the per-action
// and whole policy sets.

use super::evaluate::{probe, Val};
use super::slice::Guard;
use super::SubjectKind;
use proptest::prelude::*;

fn eq(field: &str, literal: &str) -> Guard {
    Guard::Equals {
        field: field.into(),
        literal: literal.into(),
    }
}

fn is(field: &str, value: bool) -> Guard {
    Guard::Is {
        field: field.into(),
        value,
    }
}

/// The shipped pack overlaid with `files`.
fn overlay_pack(files: &[(&str, &str)]) -> crate::policy::CompiledPack {
    let dir = tempfile::tempdir().unwrap();
    for (n, t) in files {
        std::fs::write(dir.path().join(n), t).unwrap();
    }
    PolicyPack::with_overlay(dir.path())
        .unwrap()
        .compile()
        .unwrap()
}

const HEADER: &str =
    "@title(\"t\")\n@severity(\"low\")\n@controls(\"PR.AA-05\")\n@remediation(\"r\")\n";

/// Custom policies that exercise every rule of guard extraction, and two
/// that can raise errors (an overflow), so error sets are compared too.
fn tricky_policies() -> Vec<(String, String)> {
    let change = "action == SyncProof::Action::\"change\"";
    let grant = "action == SyncProof::Action::\"grant\"";
    let both = "action in [SyncProof::Action::\"change\", SyncProof::Action::\"grant\"]";
    let list: Vec<(&str, String)> = vec![
        // A guard after a non-guard conjunct does not count.
        (
            "x-late-guard",
            format!("forbid (principal, {change}, resource) when {{ context.latency_ms > 5 && context.confirmed }};"),
        ),
        // `unless` first: no guards, even though its body looks like one.
        (
            "x-unless-first",
            format!("forbid (principal, {change}, resource) unless {{ context.removal }} when {{ context.confirmed }};"),
        ),
        // `||` at the top.
        (
            "x-or",
            format!("forbid (principal, {change}, resource) when {{ context.confirmed || context.removal }};"),
        ),
        // `!=` and a negated `==` are not guards.
        (
            "x-not-equal",
            format!("forbid (principal, {grant}, resource) when {{ context.status != \"desired\" && context.paths > 3 }};"),
        ),
        (
            "x-negated-eq",
            format!("forbid (principal, {grant}, resource) when {{ !(context.status == \"desired\") && context.paths > 3 }};"),
        ),
        // A principal scope with guards, literal on the left.
        (
            "x-principal",
            format!("forbid (principal == SyncProof::Identity::\"alice\", {change}, resource) when {{ \"pending\" == context.status && !context.removal && context.pending_ms > 1000 }};"),
        ),
        // Reads an optional entity attribute through `has`.
        (
            "x-has-owner",
            format!("forbid (principal, {grant}, resource) when {{ context.via_group_only && principal has owner && principal.owner == \"alice\" }};"),
        ),
        // Guards, then a conjunct that overflows on large values: errors
        // must be reported exactly when the guards hold.
        (
            "x-overflow",
            format!("forbid (principal, {change}, resource) when {{ context.confirmed && context.status == \"confirmed\" && context.latency_ms * 1000000 > 0 }};"),
        ),
        // A conjunct that can raise an error before a guard: the guard must
        // not be used, or the error would be lost when it is false.
        (
            "x-error-then-guard",
            format!("forbid (principal, {change}, resource) when {{ context.pending_ms * 1000000 > 0 && context.confirmed }};"),
        ),
        // No guards and an overflow: errors on every large value.
        (
            "x-overflow-always",
            format!("forbid (principal, {grant}, resource) when {{ context.age_ms * 1000000 > 0 }};"),
        ),
        // Two actions, a guard on a field both have; two clauses.
        (
            "x-two-actions",
            format!("forbid (principal, {both}, resource) when {{ context.status == \"failed\" }} unless {{ context.status == \"x\" }};"),
        ),
        // Two guards on one field can never both hold.
        (
            "x-contradiction",
            format!("forbid (principal, {grant}, resource) when {{ context.status == \"unauthorized\" && context.status == \"desired\" }};"),
        ),
    ];
    list.into_iter()
        .map(|(id, body)| {
            (
                format!("{id}.cedar"),
                format!("@id(\"{id}\")\n{HEADER}{body}\n"),
            )
        })
        .collect()
}

fn tricky_pack() -> crate::policy::CompiledPack {
    let files = tricky_policies();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    overlay_pack(&refs)
}

#[test]
fn leading_guards_of_the_shipped_pack() {
    let pack = PolicyPack::builtin().compile().unwrap();
    let expected: BTreeMap<&str, Vec<Guard>> = BTreeMap::from([
        ("baseline", vec![]),
        ("change-failed", vec![eq("status", "failed")]),
        ("connector-failing", vec![is("has_error", true)]),
        ("connector-silent", vec![]),
        (
            "expired-grant",
            vec![eq("status", "expired_still_effective")],
        ),
        ("grant-age", vec![is("desired", true), is("has_age", true)]),
        ("missed-event", vec![eq("status", "missed_event")]),
        ("not-revoked", vec![eq("status", "not_revoked")]),
        ("orphan-account", vec![is("orphan", true)]),
        ("revocation-unconfirmed", vec![is("removal", true)]),
        ("snapshot-stale", vec![]),
        (
            "sync-latency",
            vec![is("confirmed", true), is("removal", false)],
        ),
        (
            "sync-overdue",
            vec![eq("status", "pending"), is("removal", false)],
        ),
        ("unauthorized-access", vec![eq("status", "unauthorized")]),
    ]);
    let got: BTreeMap<&str, Vec<Guard>> = pack
        .guards
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(got, expected);
    // The key reads exactly the guarded fields.
    let fields = |k: SubjectKind| -> BTreeSet<&str> { pack.slices[&k].fields().collect() };
    assert_eq!(
        fields(SubjectKind::Change),
        BTreeSet::from(["confirmed", "removal", "status"])
    );
    assert_eq!(
        fields(SubjectKind::Grant),
        BTreeSet::from(["desired", "has_age", "status"])
    );
    assert!(fields(SubjectKind::Snapshot).is_empty());
}

#[test]
fn leading_guards_of_tricky_policies() {
    let pack = tricky_pack();
    let g = |id: &str| pack.guards[id].clone();
    assert_eq!(g("x-late-guard"), vec![]);
    assert_eq!(g("x-unless-first"), vec![]);
    assert_eq!(g("x-or"), vec![]);
    assert_eq!(g("x-not-equal"), vec![]);
    assert_eq!(g("x-negated-eq"), vec![]);
    assert_eq!(
        g("x-principal"),
        vec![eq("status", "pending"), is("removal", false)]
    );
    assert_eq!(g("x-has-owner"), vec![is("via_group_only", true)]);
    assert_eq!(
        g("x-overflow"),
        vec![is("confirmed", true), eq("status", "confirmed")]
    );
    assert_eq!(g("x-overflow-always"), vec![]);
    assert_eq!(g("x-error-then-guard"), vec![]);
    assert_eq!(g("x-two-actions"), vec![eq("status", "failed")]);
    assert_eq!(
        g("x-contradiction"),
        vec![eq("status", "unauthorized"), eq("status", "desired")]
    );
    // `has` on an entity counts as reading the attribute.
    let attrs = pack.entity_attrs.clone().unwrap();
    assert!(attrs.contains("owner"), "{attrs:?}");
}

fn samples() -> crate::reconcile::model::Reconciled {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let collection = crate::ingest::load(&root).unwrap();
    crate::reconcile::run(collection, &Default::default()).unwrap()
}

fn assert_equivalent(p: &probe::Probe) {
    let [sliced, per_action, whole] = &p.outcomes;
    assert_eq!(sliced, per_action, "{} ({:?})", p.subject, p.kind);
    assert_eq!(sliced, whole, "{} ({:?})", p.subject, p.kind);
    assert_eq!(&p.direct, sliced, "{} ({:?})", p.subject, p.kind);
}

#[test]
fn sliced_sets_decide_every_sample_subject_as_the_full_sets_do() {
    for pack in [PolicyPack::builtin().compile().unwrap(), tricky_pack()] {
        let probes = probe::every_subject(&samples(), &pack).unwrap();
        assert!(probes.len() > 50, "{}", probes.len());
        // Every kind, some denied, and some requests actually sliced.
        let kinds: BTreeSet<SubjectKind> = probes.iter().map(|p| p.kind).collect();
        assert_eq!(kinds.len(), SubjectKind::ALL.len());
        assert!(probes
            .iter()
            .any(|p| p.outcomes[0].0 == cedar_policy::Decision::Deny));
        let (mut sliced, mut full) = (0, 0);
        for p in &probes {
            assert_equivalent(p);
            // The builder supplies every guarded field with its type.
            assert!(p.keyed, "{} fell back to the full set", p.subject);
            sliced += p.sliced.len();
            full += pack.by_action[&p.kind].policies().count();
        }
        assert!(sliced * 3 < full * 2, "{sliced} of {full}");
    }
}

#[test]
fn compliant_grants_and_changes_are_decided_against_two_policies() {
    let pack = PolicyPack::builtin().compile().unwrap();
    let r = Builder::new("medium")
        .change(Operation::Grant, ChangeStatus::Confirmed, MINUTE)
        .grant("alice", GrantStatus::Desired, Some(DAY), &[])
        .r;
    let probes = probe::every_subject(&r, &pack).unwrap();
    let sliced = |kind: SubjectKind| -> Vec<String> {
        probes
            .iter()
            .find(|p| p.kind == kind)
            .map(|p| p.sliced.clone())
            .unwrap()
    };
    assert_eq!(sliced(SubjectKind::Change), ["baseline", "sync-latency"]);
    assert_eq!(sliced(SubjectKind::Grant), ["baseline", "grant-age"]);
    // Their requests carry only the context fields those policies read.
    use super::slice::GuardValue;
    let grant = pack.slices[&SubjectKind::Grant].select(|f| match f {
        "status" => Some(GuardValue::Str("desired")),
        _ => Some(GuardValue::Bool(true)),
    });
    assert_eq!(
        grant.context_fields.clone().unwrap(),
        BTreeSet::from(["age_ms".to_owned(), "desired".into(), "has_age".into()])
    );
    let account = pack.slices[&SubjectKind::Account].select(|_| Some(GuardValue::Bool(false)));
    assert_eq!(account.policies.policies().count(), 1);
    assert_eq!(account.context_fields, Some(BTreeSet::new()));
}

#[test]
fn errors_are_reported_alike_by_sliced_and_full_sets() {
    let pack = tricky_pack();
    let r = Builder::new("high")
        .change(Operation::Grant, ChangeStatus::Confirmed, MINUTE)
        .r;
    let ctx = |confirmed: bool| {
        vec![
            ("status", Val::Str("confirmed".into())),
            ("removal", Val::Bool(false)),
            ("confirmed", Val::Bool(confirmed)),
            ("latency_ms", Val::Long(i64::MAX)),
            ("pending_ms", Val::Long(i64::MAX)),
        ]
    };
    for confirmed in [true, false] {
        let p = probe::with_context(&r, &pack, SubjectKind::Change, ctx(confirmed))
            .unwrap()
            .unwrap();
        assert_equivalent(&p);
        let errors: Vec<&str> = p.outcomes[0]
            .2
            .iter()
            .map(|e| e.split(':').next().unwrap_or_default())
            .collect();
        // `x-error-then-guard` errs before its guard is read; `x-overflow`
        // only once its guards hold.
        let expected = if confirmed {
            vec!["x-error-then-guard", "x-overflow"]
        } else {
            vec!["x-error-then-guard"]
        };
        assert_eq!(errors, expected);
    }
}

#[derive(Clone, Copy, Debug)]
enum Ty {
    S,
    B,
    L,
}

/// Each action's context fields, as in the schema.
fn shape(kind: SubjectKind) -> &'static [(&'static str, Ty)] {
    use Ty::*;
    match kind {
        SubjectKind::Change => &[
            ("key", S),
            ("operation", S),
            ("removal", B),
            ("entitlement", S),
            ("status", S),
            ("confirmed", B),
            ("latency_ms", L),
            ("pending_ms", L),
            ("attempts", L),
            ("redeliveries", L),
        ],
        SubjectKind::Grant => &[
            ("account", S),
            ("status", S),
            ("desired", B),
            ("via_group_only", B),
            ("paths", L),
            ("has_age", B),
            ("age_ms", L),
            ("removal_requested", B),
        ],
        SubjectKind::Assignment => &[("status", S), ("explained", B)],
        SubjectKind::Account => &[("orphan", B), ("active", B), ("entitlements", L)],
        SubjectKind::Connector => &[
            ("seen", B),
            ("silence_ms", L),
            ("errors", L),
            ("has_error", B),
            ("since_last_error_ms", L),
            ("failed_attempts", L),
            ("pending_changes", L),
            ("failed_changes", L),
        ],
        SubjectKind::Snapshot => &[("age_ms", L)],
    }
}

fn value(ty: Ty) -> BoxedStrategy<Val<'static>> {
    match ty {
        Ty::S => prop_oneof![
            4 => prop::sample::select(vec![
                "failed", "pending", "confirmed", "expired_still_effective", "not_revoked",
                "unauthorized", "desired", "missed_event", "provisioned", "x", "",
            ])
            .prop_map(|s| Val::Str(s.into())),
            1 => "[a-z_]{0,12}".prop_map(|s| Val::Str(s.into())),
        ]
        .boxed(),
        Ty::B => any::<bool>().prop_map(Val::Bool).boxed(),
        Ty::L => prop_oneof![
            4 => (0i64..=400 * DAY).prop_map(Val::Long),
            1 => any::<i64>().prop_map(Val::Long),
        ]
        .boxed(),
    }
}

/// A context of `kind`: mostly well-typed, sometimes with a field missing or
/// of another type (then the request must fall back to the full set).
fn context(kind: SubjectKind) -> impl Strategy<Value = Vec<(&'static str, Val<'static>)>> {
    let fields: Vec<_> = shape(kind)
        .iter()
        .map(|(name, ty)| {
            let v = prop_oneof![
                30 => value(*ty).prop_map(Some),
                1 => prop_oneof![value(Ty::S), value(Ty::B), value(Ty::L)].prop_map(Some),
                1 => Just(None),
            ];
            (Just(*name), v)
        })
        .collect();
    fields.prop_map(|f| {
        f.into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect()
    })
}

fn kind_and_context(
) -> impl Strategy<Value = (SubjectKind, Vec<(&'static str, Val<'static>)>, usize)> {
    prop::sample::select(SubjectKind::ALL.to_vec())
        .prop_flat_map(|k| (Just(k), context(k), 0usize..4))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sliced_sets_decide_generated_contexts_as_the_full_sets_do(
        (kind, ctx, tier) in kind_and_context(),
    ) {
        use std::sync::OnceLock;
        static PACKS: OnceLock<[crate::policy::CompiledPack; 2]> = OnceLock::new();
        let packs = PACKS.get_or_init(|| [PolicyPack::builtin().compile().unwrap(), tricky_pack()]);
        let tier = ["critical", "high", "medium", "low"][tier];
        let r = Builder::new(tier)
            .change(Operation::Revoke, ChangeStatus::Pending, MINUTE)
            .grant("svc", GrantStatus::Desired, Some(DAY), &["g"])
            .assignment(AssignmentStatus::Provisioned)
            .account(Some("alice"))
            .r;
        for pack in packs {
            let p = probe::with_context(&r, pack, kind, ctx.clone()).unwrap().unwrap();
            let [sliced, per_action, whole] = &p.outcomes;
            prop_assert_eq!(sliced, per_action, "{:?} {:?}", kind, ctx);
            prop_assert_eq!(sliced, whole, "{:?} {:?}", kind, ctx);
            prop_assert_eq!(&p.direct, sliced, "{:?} {:?}", kind, ctx);
        }
    }
}

// ---------------------------------------------------------------------------
// Entity attributes no policy reads are not built.

#[test]
fn entity_attrs_are_what_the_shipped_policies_read() {
    let pack = PolicyPack::builtin().compile().unwrap();
    let attrs = pack.entity_attrs.clone().unwrap();
    assert_eq!(
        attrs.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "heartbeat_window",
            "max_grant_age",
            "max_snapshot_age",
            "max_sync_latency",
            "revocation_window",
            "tier",
        ]
    );
}

#[test]
fn entity_attr_reads_fail_safe() {
    use super::slice::entity_attr_reads;
    let read = |v: serde_json::Value| {
        let mut names = BTreeSet::new();
        let mut unknown = false;
        entity_attr_reads(&v, &mut names, &mut unknown);
        (names, unknown)
    };
    // `context.x` is not an entity attribute; `principal.kind` and
    // `resource has owner` are; `.y` on `context.x` counts too.
    let (names, unknown) = read(serde_json::json!({"&&": {
        "left": {".": {"left": {"Var": "context"}, "attr": "x"}},
        "right": {"&&": {
            "left": {"==": {"left": {".": {"left": {"Var": "principal"}, "attr": "kind"}}, "right": {"Value": "bot"}}},
            "right": {"||": {
                "left": {"has": {"left": {"Var": "resource"}, "attr": "owner"}},
                "right": {".": {"left": {".": {"left": {"Var": "context"}, "attr": "x"}}, "attr": "y"}}
            }}
        }}
    }}));
    assert!(!unknown);
    assert_eq!(
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        ["kind", "owner", "y"]
    );
    // An access that names no attribute, or an embedded expression string:
    // keep everything.
    assert!(read(serde_json::json!({".": {"left": {"Var": "principal"}}})).1);
    assert!(read(serde_json::json!({"Value": {"__expr": "principal.kind"}})).1);
}

/// The findings of `r` as JSON, evaluated with `pack`.
fn findings_json(
    r: &crate::reconcile::model::Reconciled,
    pack: &crate::policy::CompiledPack,
) -> String {
    let eval = evaluate(
        r,
        pack,
        EvaluateOptions {
            keep_subjects: true,
            ..Default::default()
        },
    )
    .unwrap();
    format!(
        "{}\n{:?}",
        serde_json::to_string_pretty(&eval).unwrap(),
        eval.evaluated.to_vec().unwrap()
    )
}

#[test]
fn pruned_entities_give_identical_findings_on_the_samples() {
    let r = samples();
    // The shipped pack, and one whose custom policies read `owner` through
    // `has`, and `kind`, `human`, `name`, `format` and `applications`.
    let extra = format!(
        "@id(\"x-reads-attrs\")\n{HEADER}forbid (principal, action == SyncProof::Action::\"grant\", resource) when {{ !principal.human && principal.kind != \"bot\" && resource.name like \"*admin*\" }};\n\n@id(\"x-reads-more\")\n{HEADER}forbid (principal == SyncProof::Application::\"crm-saas\", action == SyncProof::Action::\"snapshot\", resource) when {{ resource.format == \"scim\" && principal.connector.applications.contains(\"crm-saas\") }};\n\n@id(\"x-reads-accounts\")\n{HEADER}forbid (principal in SyncProof::Application::\"payments-db\", action == SyncProof::Action::\"account\", resource) when {{ context.active && principal.name like \"*svc*\" }};\n"
    );
    let mut files = tricky_policies();
    files.push(("x-attrs.cedar".into(), extra));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    for (pack_is_overlay, pack) in [
        (false, PolicyPack::builtin().compile().unwrap()),
        (true, overlay_pack(&refs)),
    ] {
        assert!(pack.entity_attrs.is_some());
        assert!(pack.store_kinds.is_some());
        let pruned = findings_json(&r, &pack);
        let mut full_pack = pack;
        full_pack.entity_attrs = None;
        full_pack.store_kinds = None;
        let full = findings_json(&r, &full_pack);
        assert_eq!(pruned, full);
        if pack_is_overlay {
            // The custom account policy needs the account entities, and
            // finds what it looks for only if they are in the store.
            assert!(pruned.contains("\"policy_id\": \"x-reads-accounts\""));
        }
        assert!(pruned.contains("\"policy_id\""), "no findings at all");
    }
}

#[test]
fn store_kinds_are_the_kinds_whose_policies_read_entities() {
    use super::slice::{store_reads, StoreReads};
    let kinds = |pack: &crate::policy::CompiledPack| {
        pack.store_kinds
            .as_ref()
            .map(|k| k.iter().map(|k| k.as_str()).collect::<Vec<_>>())
    };
    // The shipped account and assignment policies read only the context.
    let builtin = PolicyPack::builtin().compile().unwrap();
    assert_eq!(
        kinds(&builtin),
        Some(vec!["change", "grant", "connector", "snapshot"])
    );
    let read = |text: &str| {
        let p: cedar_policy::Policy = text.parse().unwrap();
        store_reads(&p.to_json().unwrap())
    };
    let (none, reads) = (
        StoreReads::default(),
        StoreReads {
            reads: true,
            literal: false,
        },
    );
    assert_eq!(read("permit (principal, action, resource);"), none);
    assert_eq!(
        read("forbid (principal == A::\"a\", action, resource is B) when { context.x && principal is A };"),
        none
    );
    for reading in [
        "forbid (principal in A::\"a\", action, resource);",
        "forbid (principal, action, resource is B in A::\"a\");",
        "forbid (principal, action, resource) when { resource.tier == \"x\" };",
        "forbid (principal, action, resource) when { principal has owner };",
        "forbid (principal, action, resource) when { context.e in principal };",
        // `context.e` could be an entity.
        "forbid (principal, action, resource) when { context.e.x };",
        "forbid (principal, action, resource) when { principal.hasTag(\"t\") };",
    ] {
        assert_eq!(read(reading), reads, "{reading}");
    }
    assert!(read("forbid (principal, action, resource) when { principal == A::\"a\" };").literal);
    // A literal in a condition makes every kind's store complete.
    let literal = format!(
        "@id(\"x-literal\")\n{HEADER}forbid (principal, action == SyncProof::Action::\"account\", resource) when {{ resource == SyncProof::Application::\"crm-saas\" && context.orphan }};\n"
    );
    assert_eq!(kinds(&overlay_pack(&[("x.cedar", literal.as_str())])), None);
}

/// Reconciling and evaluating one application at a time gives exactly what
/// evaluating the fully reconciled collection gives: the same findings,
/// tallies and subjects, and the same reconciled facts (drift, snapshots,
/// connectors, inputs, changes, events).
fn assert_fused_matches_whole(root: &std::path::Path) {
    let pack = PolicyPack::builtin().compile().unwrap();
    let options = EvaluateOptions {
        keep_subjects: true,
        progress: None,
    };
    let whole = crate::reconcile::load_and_run(root, &Default::default()).unwrap();
    // Snapshots parsed up front (`ingest::load`) or read one application at
    // a time: the same reconciled collection, byte for byte.
    let loaded =
        crate::reconcile::run(crate::ingest::load(root).unwrap(), &Default::default()).unwrap();
    assert_eq!(json(&loaded), json(&whole));
    let expected = evaluate(&whole, &pack, options).unwrap();
    let prepared = crate::reconcile::prepare(root, &Default::default()).unwrap();
    let (fused, eval) = super::reconcile_and_evaluate(prepared, &pack, options).unwrap();

    assert!(!expected.findings.is_empty());
    assert_eq!(json(&eval), json(&expected));
    assert_eq!(
        eval.evaluated.to_vec().unwrap(),
        expected.evaluated.to_vec().unwrap()
    );
    assert!(eval.evaluated.len() > 100, "{}", eval.evaluated.len());
    // The per-application lists are not kept; their counts are.
    assert!(fused.grants.is_empty() && fused.assignments.is_empty() && fused.accounts.is_empty());
    assert!(!whole.grants.is_empty());
    for (a, b) in fused.snapshots.iter().zip(&whole.snapshots) {
        assert_eq!((a.grants, a.accounts), (b.grants, b.accounts));
    }
    assert_eq!(
        fused.snapshots.iter().map(|s| s.grants).sum::<usize>(),
        whole.grants.len()
    );
    assert_eq!(json(&fused.drift), json(&whole.drift));
    assert_eq!(json(&fused.snapshots), json(&whole.snapshots));
    assert_eq!(json(&fused.connectors), json(&whole.connectors));
    assert_eq!(json(&fused.inputs), json(&whole.inputs));
    // Each application's changes are read from the store when it is
    // reconciled; only their figures are kept.
    assert!(fused.changes.is_empty() && !whole.changes.is_empty());
    assert_eq!(fused.change_figures, whole.change_figures);
    assert_eq!(
        fused
            .change_figures
            .iter()
            .map(|(_, f)| f.len())
            .sum::<usize>(),
        whole.changes.len()
    );
    assert_eq!(json(&fused.events), json(&whole.events));
    assert_eq!(json(&fused.anomalies), json(&whole.anomalies));
    assert_eq!(
        crate::reconcile::summary::summarise(&fused),
        crate::reconcile::summary::summarise(&whole)
    );
}

/// A value as JSON text, to compare records that are not `PartialEq`.
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn one_application_at_a_time_matches_the_whole_collection_on_samples() {
    assert_fused_matches_whole(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples"));
}

#[test]
fn one_application_at_a_time_matches_the_whole_collection_on_a_generated_workload() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    crate::generate::generate(
        &root,
        &crate::generate::Options {
            events: 6_000,
            identities: 600,
            applications: 12,
            seed: 11,
        },
    )
    .unwrap();
    assert_fused_matches_whole(&root);
}
