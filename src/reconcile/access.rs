//! Effective access and drift.
//!
//! Effective access is what an account can really use in a target: its direct
//! entitlements plus those of every group it belongs to, transitively, through
//! nested groups (cycle-safe). Every route is kept, so a revocation that
//! removed the direct grant but left a nested group in place is caught.
//!
//! Each effective grant is then set against the desired state and the change
//! log, and every gap becomes one [`Drift`] record. Fail closed throughout:
//! access in the snapshot exists unless a confirmed revocation after the
//! snapshot says otherwise.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::model::{
    AccountState, AssignmentState, AssignmentStatus, Change, ChangeStatus, Drift, DriftClass,
    Grant, GrantPath, GrantStatus,
};
use crate::ingest::model::{
    Assignment, Identity, IdentityStatus, ObservedAccount, ObservedGroup, Operation, Snapshot,
};
use crate::time::{format_timestamp, Span, Timestamp};
use crate::{FastMap, FastSet};

/// Entitlement → routes, for one account.
type Routes = BTreeMap<String, Vec<GrantPath>>;

/// Computes every account's effective entitlements in one snapshot.
pub(crate) fn effective(snapshot: &Snapshot) -> FastMap<&str, Routes> {
    let groups: FastMap<&str, &ObservedGroup> = snapshot
        .groups
        .iter()
        .map(|g| (g.target_id.as_str(), g))
        .collect();
    // Nested group M in G: M's members are members of G. Walk upwards.
    let mut parents: FastMap<&str, Vec<&str>> = FastMap::default();
    let mut direct_groups: FastMap<&str, Vec<&str>> = FastMap::default();
    for g in &snapshot.groups {
        for m in &g.member_groups {
            parents
                .entry(m.as_str())
                .or_default()
                .push(g.target_id.as_str());
        }
        for a in &g.member_accounts {
            direct_groups
                .entry(a.as_str())
                .or_default()
                .push(g.target_id.as_str());
        }
    }
    for v in parents.values_mut().chain(direct_groups.values_mut()) {
        v.sort_unstable();
        v.dedup();
    }
    let mut out = FastMap::default();
    for account in &snapshot.accounts {
        out.insert(
            account.target_id.as_str(),
            routes_of(account, &groups, &parents, &direct_groups),
        );
    }
    out
}

fn routes_of(
    account: &ObservedAccount,
    groups: &FastMap<&str, &ObservedGroup>,
    parents: &FastMap<&str, Vec<&str>>,
    direct_groups: &FastMap<&str, Vec<&str>>,
) -> Routes {
    let mut routes: Routes = BTreeMap::new();
    for e in &account.direct {
        routes
            .entry(e.clone())
            .or_default()
            .push(GrantPath { groups: Vec::new() });
    }
    // Breadth-first from the account's groups: the first path that reaches a
    // group is a shortest one; `visited` makes cycles harmless.
    let mut visited: BTreeSet<&str> = BTreeSet::new();
    let mut queue: VecDeque<(&str, Vec<&str>)> = VecDeque::new();
    for g in direct_groups
        .get(account.target_id.as_str())
        .into_iter()
        .flatten()
    {
        if visited.insert(g) {
            queue.push_back((g, vec![*g]));
        }
    }
    while let Some((g, path)) = queue.pop_front() {
        if let Some(group) = groups.get(g) {
            for e in &group.entitlements {
                routes.entry(e.clone()).or_default().push(GrantPath {
                    groups: path
                        .iter()
                        .map(|id| {
                            groups
                                .get(id)
                                .map_or(*id, |g| g.display_name.as_str())
                                .to_owned()
                        })
                        .collect(),
                });
            }
        }
        for p in parents.get(g).into_iter().flatten() {
            if visited.insert(p) {
                let mut next = path.clone();
                next.push(p);
                queue.push_back((p, next));
            }
        }
    }
    for paths in routes.values_mut() {
        paths.sort();
        paths.dedup();
    }
    routes
}

/// Indexes changes by what they act on.
pub(crate) struct ChangeIndex<'a> {
    /// (identity, application, entitlement) → changes, in request order.
    by_entitlement: FastMap<(&'a str, &'a str, &'a str), Vec<&'a Change>>,
    /// (identity, application) → account-level changes, in request order.
    by_account: FastMap<(&'a str, &'a str), Vec<&'a Change>>,
}

impl<'a> ChangeIndex<'a> {
    /// Builds the index; `changes` must be sorted by request time.
    pub(crate) fn new(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut by_entitlement: FastMap<(&str, &str, &str), Vec<&Change>> = FastMap::default();
        let mut by_account: FastMap<(&str, &str), Vec<&Change>> = FastMap::default();
        for c in changes {
            match &c.entitlement {
                Some(e) => by_entitlement
                    .entry((&c.identity, &c.application, e))
                    .or_default()
                    .push(c),
                None => by_account
                    .entry((&c.identity, &c.application))
                    .or_default()
                    .push(c),
            }
        }
        ChangeIndex {
            by_entitlement,
            by_account,
        }
    }

    fn for_entitlement<'s>(
        &'s self,
        identity: &'s str,
        app: &'s str,
        ent: &'s str,
    ) -> &'s [&'a Change] {
        let map: &'s FastMap<(&'s str, &'s str, &'s str), Vec<&'a Change>> = &self.by_entitlement;
        map.get(&(identity, app, ent)).map_or(&[], Vec::as_slice)
    }

    fn for_account<'s>(&'s self, identity: &'s str, app: &'s str) -> &'s [&'a Change] {
        let map: &'s FastMap<(&'s str, &'s str), Vec<&'a Change>> = &self.by_account;
        map.get(&(identity, app)).map_or(&[], Vec::as_slice)
    }

    /// The latest removal (revoke of this entitlement, or disable/delete of
    /// the account) requested for it.
    fn latest_removal(&self, identity: &str, app: &str, ent: &str) -> Option<&'a Change> {
        self.for_entitlement(identity, app, ent)
            .iter()
            .chain(self.for_account(identity, app))
            .filter(|c| c.operation.is_removal())
            .max_by(|a, b| a.requested_at.cmp(&b.requested_at).then(a.key.cmp(&b.key)))
            .copied()
    }

    /// The latest grant or update of it.
    fn latest_grant(&self, identity: &str, app: &str, ent: &str) -> Option<&'a Change> {
        self.for_entitlement(identity, app, ent)
            .iter()
            .filter(|c| matches!(c.operation, Operation::Grant | Operation::Update))
            .max_by(|a, b| a.requested_at.cmp(&b.requested_at).then(a.key.cmp(&b.key)))
            .copied()
    }
}

/// Per application, the account names identities declare for it
/// (`accounts:` in the desired state), built once for all snapshots.
pub(crate) struct AccountIndex<'a> {
    by_app: FastMap<&'a str, FastMap<&'a str, &'a str>>,
}

impl<'a> AccountIndex<'a> {
    /// Indexes every identity's declared account names.
    pub(crate) fn new(identities: &'a [Identity]) -> Self {
        let mut by_app: FastMap<&str, FastMap<&str, &str>> = FastMap::default();
        for i in identities {
            for (app, name) in &i.accounts {
                by_app
                    .entry(app.as_str())
                    .or_default()
                    .insert(name.as_str(), i.id.as_str());
            }
        }
        AccountIndex { by_app }
    }
}

/// Everything the access stage produces.
pub(crate) struct AccessResult {
    pub(crate) grants: Vec<Grant>,
    pub(crate) assignments: Vec<AssignmentState>,
    pub(crate) accounts: Vec<AccountState>,
    pub(crate) drift: Vec<Drift>,
}

/// Sets one snapshot's effective access against the desired state.
pub(crate) fn reconcile_snapshot(
    snapshot: &Snapshot,
    identities: &FastMap<&str, &Identity>,
    accounts_index: &AccountIndex<'_>,
    assignments: &[&Assignment],
    changes: &ChangeIndex<'_>,
    as_of: Timestamp,
) -> AccessResult {
    let app = snapshot.application.as_str();
    let routes = effective(snapshot);
    // Account name → identity: the identity's account name for this app, or
    // its id when it names none for this app.
    let resolve = |name: &str| -> Option<&str> {
        if let Some(id) = accounts_index.by_app.get(app).and_then(|m| m.get(name)) {
            return Some(id);
        }
        identities
            .get(name)
            .filter(|i| !i.accounts.contains_key(app))
            .map(|i| i.id.as_str())
    };
    let by_key: FastMap<(&str, &str), &Assignment> = assignments
        .iter()
        .map(|a| ((a.identity.as_str(), a.entitlement.as_str()), *a))
        .collect();
    let is_desired = |a: &Assignment| -> bool {
        identities
            .get(a.identity.as_str())
            .is_some_and(|i| i.status == IdentityStatus::Active)
            && a.expires_at.is_none_or(|e| e > as_of)
    };

    let mut out = AccessResult {
        grants: Vec::new(),
        assignments: Vec::new(),
        accounts: Vec::new(),
        drift: Vec::new(),
    };
    // (identity, entitlement) effectively held by an active account.
    let mut held: FastSet<(&str, &str)> = FastSet::default();

    let group_by_name: FastMap<&str, &ObservedGroup> = snapshot
        .groups
        .iter()
        .map(|g| (g.display_name.as_str(), g))
        .collect();
    let empty = Routes::new();
    for account in &snapshot.accounts {
        let identity = resolve(account.name.as_str());
        let account_routes = if account.active {
            routes.get(account.target_id.as_str()).unwrap_or(&empty)
        } else {
            // A disabled account confers no effective access.
            &empty
        };
        out.accounts.push(AccountState {
            application: app.to_owned(),
            account: account.name.clone(),
            identity: identity.map(str::to_owned),
            active: account.active,
            entitlements: account_routes.len(),
            evidence: vec![account.source.clone()],
        });
        if identity.is_none() {
            out.drift.push(Drift {
                class: DriftClass::OrphanAccount,
                application: app.to_owned(),
                identity: None,
                account: Some(account.name.clone()),
                entitlement: None,
                change: None,
                detail: format!(
                    "account `{}` ({}) maps to no identity; holds {} entitlement(s){}",
                    account.name,
                    if account.active { "active" } else { "inactive" },
                    account_routes.len(),
                    if account_routes.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            account_routes
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
                evidence: vec![account.source.clone()],
            });
        }
        for (ent, paths) in account_routes {
            let mut evidence = vec![account.source.clone()];
            for p in paths {
                for gname in &p.groups {
                    if let Some(g) = group_by_name.get(gname.as_str()) {
                        evidence.push(g.source.clone());
                    }
                }
            }
            evidence.sort();
            evidence.dedup();
            let Some(identity_id) = identity else {
                out.grants.push(Grant {
                    application: app.to_owned(),
                    account: account.name.clone(),
                    identity: None,
                    entitlement: ent.clone(),
                    paths: paths.clone(),
                    status: GrantStatus::Orphan,
                    granted_at: None,
                    expires_at: None,
                    age: None,
                    removal: None,
                    evidence,
                });
                continue;
            };
            held.insert((identity_id, ent.as_str()));
            let assignment = by_key.get(&(identity_id, ent.as_str())).copied();
            if let Some(a) = assignment {
                evidence.push(a.source.clone());
            }
            let removal = changes.latest_removal(identity_id, app, ent);
            let grant_change = changes.latest_grant(identity_id, app, ent);
            // Only drift records describe the routes: built when needed.
            let route_text = || {
                paths
                    .iter()
                    .map(|p| p.describe(&account.name, ent))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let status = match assignment {
                Some(a) if is_desired(a) => GrantStatus::Desired,
                Some(a)
                    if a.expires_at.is_some_and(|e| e <= as_of)
                        && identities
                            .get(identity_id)
                            .is_some_and(|i| i.status == IdentityStatus::Active) =>
                {
                    GrantStatus::ExpiredStillEffective
                }
                _ => {
                    let confirmed_after_snapshot = removal.is_some_and(|r| {
                        r.status == ChangeStatus::Confirmed
                            && r.confirmed_at.is_some_and(|t| t > snapshot.taken_at)
                    });
                    if confirmed_after_snapshot {
                        GrantStatus::RevokedAfterSnapshot
                    } else if removal.is_some() || assignment.is_some() || grant_change.is_some() {
                        GrantStatus::NotRevoked
                    } else {
                        GrantStatus::Unauthorized
                    }
                }
            };
            if let Some(r) = removal {
                evidence.extend(r.evidence.first().cloned());
            }
            evidence.sort();
            evidence.dedup();
            let drift = match status {
                GrantStatus::ExpiredStillEffective => Some((
                    DriftClass::ExpiredStillEffective,
                    None,
                    format!(
                        "`{identity_id}` holds `{ent}` past its expiry {} via {}",
                        assignment
                            .and_then(|a| a.expires_at)
                            .map(|t| format_timestamp(&t))
                            .unwrap_or_default(),
                        route_text()
                    ),
                )),
                GrantStatus::NotRevoked => {
                    let why = match (removal, identities.get(identity_id).map(|i| i.status)) {
                        (Some(r), _) => format!(
                            "{} `{}` requested {} is {}",
                            r.operation.as_str(),
                            r.key,
                            format_timestamp(&r.requested_at),
                            match r.status {
                                ChangeStatus::Confirmed => format!(
                                    "confirmed {}, yet access remains",
                                    r.confirmed_at
                                        .map(|t| format_timestamp(&t))
                                        .unwrap_or_default()
                                ),
                                s => s.as_str().to_owned(),
                            }
                        ),
                        (None, Some(s)) if s != IdentityStatus::Active => {
                            format!("identity is {}", s.as_str())
                        }
                        _ => "no longer in the desired state".to_owned(),
                    };
                    Some((
                        DriftClass::NotRevoked,
                        removal.map(|r| r.key.clone()),
                        format!(
                            "`{identity_id}` still holds `{ent}` via {}: {why}",
                            route_text()
                        ),
                    ))
                }
                GrantStatus::Unauthorized => Some((
                    DriftClass::Unauthorized,
                    None,
                    format!(
                        "`{identity_id}` holds `{ent}` via {}, never approved and no change logged",
                        route_text()
                    ),
                )),
                _ => None,
            };
            if let Some((class, change, detail)) = drift {
                out.drift.push(Drift {
                    class,
                    application: app.to_owned(),
                    identity: Some(identity_id.to_owned()),
                    account: Some(account.name.clone()),
                    entitlement: Some(ent.clone()),
                    change,
                    detail,
                    evidence: evidence.clone(),
                });
            }
            out.grants.push(Grant {
                application: app.to_owned(),
                account: account.name.clone(),
                identity: Some(identity_id.to_owned()),
                entitlement: ent.clone(),
                paths: paths.clone(),
                status,
                granted_at: assignment.map(|a| a.granted_at),
                expires_at: assignment.and_then(|a| a.expires_at),
                age: assignment.map(|a| Span::between(&a.granted_at, &as_of)),
                removal: removal.map(|r| r.key.clone()),
                evidence,
            });
        }
    }

    for a in assignments {
        let status_and_change = if !is_desired(a) {
            (AssignmentStatus::NotDesired, None)
        } else if held.contains(&(a.identity.as_str(), a.entitlement.as_str())) {
            (AssignmentStatus::Provisioned, None)
        } else if a.granted_at > snapshot.taken_at {
            (AssignmentStatus::AfterSnapshot, None)
        } else {
            match changes.latest_grant(&a.identity, app, &a.entitlement) {
                Some(c)
                    if c.status == ChangeStatus::Confirmed
                        && c.confirmed_at.is_some_and(|t| t > snapshot.taken_at) =>
                {
                    (AssignmentStatus::AfterSnapshot, Some(c))
                }
                Some(c) => (AssignmentStatus::NotProvisioned, Some(c)),
                None => (AssignmentStatus::MissedEvent, None),
            }
        };
        let (status, change) = status_and_change;
        let mut evidence = vec![a.source.clone()];
        evidence.extend(change.and_then(|c| c.evidence.first().cloned()));
        match status {
            AssignmentStatus::NotProvisioned => out.drift.push(Drift {
                class: DriftClass::NotProvisioned,
                application: app.to_owned(),
                identity: Some(a.identity.clone()),
                account: None,
                entitlement: Some(a.entitlement.clone()),
                change: change.map(|c| c.key.clone()),
                detail: format!(
                    "approved {} but absent in the target; {}",
                    format_timestamp(&a.granted_at),
                    change
                        .map(|c| format!("change `{}` is {}", c.key, c.status.as_str()))
                        .unwrap_or_default()
                ),
                evidence: evidence.clone(),
            }),
            AssignmentStatus::MissedEvent => out.drift.push(Drift {
                class: DriftClass::MissedEvent,
                application: app.to_owned(),
                identity: Some(a.identity.clone()),
                account: None,
                entitlement: Some(a.entitlement.clone()),
                change: None,
                detail: format!(
                    "approved {} but absent in the target, and no logged change accounts for it (a missed event)",
                    format_timestamp(&a.granted_at)
                ),
                evidence: evidence.clone(),
            }),
            _ => {}
        }
        out.assignments.push(AssignmentState {
            identity: a.identity.clone(),
            application: app.to_owned(),
            entitlement: a.entitlement.clone(),
            granted_at: a.granted_at,
            expires_at: a.expires_at,
            status,
            change: change.map(|c| c.key.clone()),
            evidence,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::model::SourceRef;

    fn src(line: u64) -> SourceRef {
        SourceRef {
            file: "s.json".into(),
            line,
            sha256: Default::default(),
        }
    }

    fn group(id: &str, ents: &[&str], accounts: &[&str], groups: &[&str]) -> ObservedGroup {
        ObservedGroup {
            target_id: id.into(),
            display_name: id.into(),
            entitlements: ents.iter().map(|s| s.to_string()).collect(),
            member_accounts: accounts.iter().map(|s| s.to_string()).collect(),
            member_groups: groups.iter().map(|s| s.to_string()).collect(),
            source: src(0),
        }
    }

    fn account(id: &str, direct: &[&str]) -> ObservedAccount {
        ObservedAccount {
            name: id.into(),
            target_id: id.into(),
            active: true,
            direct: direct.iter().map(|s| s.to_string()).collect(),
            source: src(1),
        }
    }

    #[test]
    fn nested_groups_grant_transitively_and_cycles_terminate() {
        // a ∈ g1; g1 ∈ g2 (nested); g2 ∈ g3; g3 ∈ g1 (cycle).
        let snap = Snapshot {
            application: "app".into(),
            taken_at: Timestamp::default(),
            format: "scim".into(),
            files: vec![],
            accounts: vec![account("a", &["direct"])],
            groups: vec![
                group("g1", &["one"], &["a"], &["g3"]),
                group("g2", &["two"], &[], &["g1"]),
                group("g3", &["three", "direct"], &[], &["g2"]),
            ],
        };
        let routes = effective(&snap);
        let a = &routes["a"];
        assert_eq!(a["one"][0].groups, vec!["g1"]);
        assert_eq!(a["two"][0].groups, vec!["g1", "g2"]);
        assert_eq!(a["three"][0].groups, vec!["g1", "g2", "g3"]);
        // Held directly and through a group: both routes are kept.
        assert_eq!(a["direct"].len(), 2);
        assert!(a["direct"][0].groups.is_empty());
    }

    #[test]
    fn group_membership_does_not_flow_downwards() {
        // g2 ∈ g1: g1's members do not get g2's entitlements.
        let snap = Snapshot {
            application: "app".into(),
            taken_at: Timestamp::default(),
            format: "scim".into(),
            files: vec![],
            accounts: vec![account("a", &[])],
            groups: vec![
                group("g1", &["outer"], &["a"], &["g2"]),
                group("g2", &["inner"], &[], &[]),
            ],
        };
        let routes = effective(&snap);
        assert!(routes["a"].contains_key("outer"));
        assert!(!routes["a"].contains_key("inner"));
    }
}
