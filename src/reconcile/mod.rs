//! Reconciliation: change lifecycles, effective access, drift, connector
//! health and snapshot freshness, computed from ingested records.
//!
//! A pure, deterministic stage: the same collection and `--as-of` always give
//! the same [`Reconciled`] value. It makes no policy decisions — whether a
//! latency is too long is for the policy stage to say — it only establishes
//! the facts. Sync-log events are streamed in and folded as they arrive.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

mod access;
mod lifecycle;
pub mod model;
pub mod summary;

use crate::ingest::{Collection, IngestError};
use crate::time::{Span, Timestamp};
pub use model::Reconciled;
use model::{ChangeStatus, ConnectorHealth, SnapshotFreshness};

/// How to reconcile.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The instant to evaluate at; the collection's `collected_at` if unset.
    pub as_of: Option<Timestamp>,
    /// Set bad log lines aside (and list them) instead of failing.
    pub quarantine: bool,
}

/// Reads the collection's sync logs and reconciles everything at `--as-of`.
/// The collection is consumed as it is reconciled (each snapshot is dropped
/// once its application is done).
pub fn run(collection: Collection, options: &Options) -> Result<Reconciled, IngestError> {
    let as_of = options.as_of.unwrap_or(collection.collected_at);
    let mut lifecycles =
        lifecycle::Lifecycles::new(as_of, app_connectors(&collection.applications));
    let rejected = collection.read_events(options.quarantine, &mut |e| lifecycles.push(e))?;
    Ok(complete(collection, lifecycles, rejected, as_of))
}

/// Loads the collection at `root` and reconciles it, reading the sync logs
/// on one core while the desired state and snapshots are parsed on the other.
/// The result is the same as [`crate::ingest::load`] followed by [`run`];
/// the collection is consumed as it is reconciled (each snapshot is dropped
/// once its application is done), so it is not held twice.
pub fn load_and_run(root: &std::path::Path, options: &Options) -> Result<Reconciled, IngestError> {
    let (collection, (lifecycles, as_of), rejected) = crate::ingest::load_with_events(
        root,
        options.quarantine,
        |pre| {
            let as_of = options.as_of.unwrap_or(pre.collected_at);
            (
                lifecycle::Lifecycles::new(as_of, app_connectors(pre.applications)),
                as_of,
            )
        },
        |(lifecycles, _), event| lifecycles.push(event),
    )?;
    Ok(complete(collection, lifecycles, rejected, as_of))
}

fn app_connectors(apps: &[crate::ingest::model::Application]) -> HashMap<String, String> {
    apps.iter()
        .map(|a| (a.id.clone(), a.connector.clone()))
        .collect()
}

/// Everything after the events are folded.
fn complete(
    collection: Collection,
    lifecycles: lifecycle::Lifecycles,
    rejected: Vec<crate::ingest::Rejected>,
    as_of: Timestamp,
) -> Reconciled {
    let (changes, connector_acc, events, anomalies) = lifecycles.finish();
    let Collection {
        name,
        collected_at,
        applications,
        identities,
        assignments: desired,
        snapshots: observed,
        inputs,
        ..
    } = collection;

    let by_id: crate::FastMap<&str, &crate::ingest::model::Identity> =
        identities.iter().map(|i| (i.id.as_str(), i)).collect();
    let index = access::ChangeIndex::new(&changes);
    let account_index = access::AccountIndex::new(&identities);
    let mut by_app: BTreeMap<&str, Vec<&crate::ingest::model::Assignment>> = BTreeMap::new();
    for a in &desired {
        by_app.entry(a.application.as_str()).or_default().push(a);
    }
    // Each application's snapshot is reconciled on its own, in parallel, and
    // dropped as soon as it is done; each result is sorted there, then the
    // results are concatenated in application order.
    let mut results: Vec<(access::AccessResult, SnapshotFreshness)> = observed
        .into_par_iter()
        .map(|snapshot| {
            let app_assignments = by_app
                .get(snapshot.application.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let mut r = access::reconcile_snapshot(
                &snapshot,
                &by_id,
                &account_index,
                app_assignments,
                &index,
                as_of,
            );
            r.grants.sort_by(|a, b| grant_key(a).cmp(&grant_key(b)));
            r.assignments
                .sort_by(|a, b| assignment_key(a).cmp(&assignment_key(b)));
            r.accounts
                .sort_by(|a, b| account_key(a).cmp(&account_key(b)));
            let freshness = SnapshotFreshness {
                age: Span::between(&snapshot.taken_at, &as_of),
                accounts: snapshot.accounts.len(),
                groups: snapshot.groups.len(),
                application: snapshot.application,
                format: snapshot.format,
                taken_at: snapshot.taken_at,
                files: snapshot.files,
            };
            (r, freshness)
        })
        .collect();
    results.sort_by(|a, b| a.1.application.cmp(&b.1.application));
    // The desired assignments and the lookups are done with: free them
    // before the results are gathered, and gather into vectors of the exact
    // size (growing by doubling would hold two copies at the peak).
    drop((by_id, account_index, by_app, index));
    drop(desired);
    let total = |f: fn(&access::AccessResult) -> usize| results.iter().map(|(r, _)| f(r)).sum();
    let mut grants = Vec::with_capacity(total(|r| r.grants.len()));
    let mut assignments = Vec::with_capacity(total(|r| r.assignments.len()));
    let mut accounts = Vec::with_capacity(total(|r| r.accounts.len()));
    let mut drift = Vec::with_capacity(total(|r| r.drift.len()));
    let mut snapshots = Vec::with_capacity(results.len());
    for (r, freshness) in results {
        grants.extend(r.grants);
        assignments.extend(r.assignments);
        accounts.extend(r.accounts);
        drift.extend(r.drift);
        snapshots.push(freshness);
    }
    // Every key starts with the application, so the concatenation is sorted
    // already; sorting again only if an application had two snapshots.
    if !grants.is_sorted_by(|a, b| grant_key(a) <= grant_key(b)) {
        grants.sort_by(|a, b| grant_key(a).cmp(&grant_key(b)));
    }
    if !assignments.is_sorted_by(|a, b| assignment_key(a) <= assignment_key(b)) {
        assignments.sort_by(|a, b| assignment_key(a).cmp(&assignment_key(b)));
    }
    if !accounts.is_sorted_by(|a, b| account_key(a) <= account_key(b)) {
        accounts.sort_by(|a, b| account_key(a).cmp(&account_key(b)));
    }
    drift.sort_by(|a, b| {
        (
            a.class,
            &a.application,
            &a.identity,
            &a.account,
            &a.entitlement,
        )
            .cmp(&(
                b.class,
                &b.application,
                &b.identity,
                &b.account,
                &b.entitlement,
            ))
    });

    // Unfinished changes per application, counted once.
    let mut open_by_app: HashMap<&str, (u64, u64)> = HashMap::new();
    for c in &changes {
        let e = open_by_app.entry(c.application.as_str()).or_default();
        match c.status {
            ChangeStatus::Pending => e.0 += 1,
            ChangeStatus::Failed => e.1 += 1,
            ChangeStatus::Confirmed => {}
        }
    }
    let mut apps_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in &applications {
        apps_of
            .entry(a.connector.as_str())
            .or_default()
            .push(a.id.clone());
    }
    let mut connectors: Vec<ConnectorHealth> = Vec::new();
    for (id, acc) in connector_acc {
        let apps: Vec<String> = apps_of.get(id.as_str()).cloned().unwrap_or_default();
        let mine = |status: ChangeStatus| {
            apps.iter()
                .filter_map(|a| open_by_app.get(a.as_str()))
                .map(|(p, f)| {
                    if status == ChangeStatus::Pending {
                        *p
                    } else {
                        *f
                    }
                })
                .sum::<u64>()
        };
        let mut evidence = Vec::new();
        evidence.extend(acc.last_heartbeat.as_ref().map(|h| h.1.clone()));
        evidence.extend(acc.last_error.as_ref().map(|e| e.2.clone()));
        evidence.sort();
        connectors.push(ConnectorHealth {
            silence: acc.last_seen.map(|t| Span::between(&t, &as_of)),
            last_heartbeat: acc.last_heartbeat.as_ref().map(|h| h.0),
            last_seen: acc.last_seen,
            errors: acc.errors,
            last_error_at: acc.last_error.as_ref().map(|e| e.0),
            last_error: acc.last_error.as_ref().map(|e| e.1.clone()),
            failed_attempts: acc.failed_attempts,
            pending_changes: mine(ChangeStatus::Pending),
            failed_changes: mine(ChangeStatus::Failed),
            evidence,
            applications: apps,
            id,
        });
    }

    Reconciled {
        as_of,
        collection: name,
        collected_at,
        inputs,
        applications,
        identities,
        events,
        changes,
        grants,
        assignments,
        accounts,
        drift,
        connectors,
        snapshots,
        anomalies,
        rejected,
    }
}

fn grant_key(g: &model::Grant) -> (&str, &str, &str) {
    (&g.application, &g.account, &g.entitlement)
}

fn assignment_key(a: &model::AssignmentState) -> (&str, &str, &str) {
    (&a.application, &a.identity, &a.entitlement)
}

fn account_key(a: &model::AccountState) -> (&str, &str) {
    (&a.application, &a.account)
}
