//! Reconciliation: change lifecycles, effective access, drift, connector
//! health and snapshot freshness, computed from ingested records.
//!
//! A pure, deterministic stage: the same collection and `--as-of` always give
//! the same [`Reconciled`] value. It makes no policy decisions — whether a
//! latency is too long is for the policy stage to say — it only establishes
//! the facts. Sync-log events are streamed in and folded as they arrive.

use std::collections::{BTreeMap, HashMap};

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
pub fn run(collection: &Collection, options: &Options) -> Result<Reconciled, IngestError> {
    let as_of = options.as_of.unwrap_or(collection.collected_at);
    let app_connector: HashMap<String, String> = collection
        .applications
        .iter()
        .map(|a| (a.id.clone(), a.connector.clone()))
        .collect();
    let mut lifecycles = lifecycle::Lifecycles::new(as_of, app_connector);
    let rejected = collection.read_events(options.quarantine, &mut |e| lifecycles.push(e))?;
    let (changes, connector_acc, events, anomalies) = lifecycles.finish();

    let identities: BTreeMap<&str, &crate::ingest::model::Identity> = collection
        .identities
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    let index = access::ChangeIndex::new(&changes);
    let mut grants = Vec::new();
    let mut assignments = Vec::new();
    let mut accounts = Vec::new();
    let mut drift = Vec::new();
    let mut snapshots = Vec::new();
    for snapshot in &collection.snapshots {
        let app_assignments: Vec<&crate::ingest::model::Assignment> = collection
            .assignments
            .iter()
            .filter(|a| a.application == snapshot.application)
            .collect();
        let r = access::reconcile_snapshot(snapshot, &identities, &app_assignments, &index, as_of);
        grants.extend(r.grants);
        assignments.extend(r.assignments);
        accounts.extend(r.accounts);
        drift.extend(r.drift);
        snapshots.push(SnapshotFreshness {
            application: snapshot.application.clone(),
            format: snapshot.format.clone(),
            taken_at: snapshot.taken_at,
            age: Span::between(&snapshot.taken_at, &as_of),
            files: snapshot.files.clone(),
            accounts: snapshot.accounts.len(),
            groups: snapshot.groups.len(),
        });
    }
    grants.sort_by(|a, b| {
        (&a.application, &a.account, &a.entitlement).cmp(&(
            &b.application,
            &b.account,
            &b.entitlement,
        ))
    });
    assignments.sort_by(|a, b| {
        (&a.application, &a.identity, &a.entitlement).cmp(&(
            &b.application,
            &b.identity,
            &b.entitlement,
        ))
    });
    accounts.sort_by(|a, b| (&a.application, &a.account).cmp(&(&b.application, &b.account)));
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

    let mut connectors: Vec<ConnectorHealth> = Vec::new();
    for (id, acc) in connector_acc {
        let apps: Vec<String> = collection
            .applications
            .iter()
            .filter(|a| a.connector == id)
            .map(|a| a.id.clone())
            .collect();
        let mine = |status: ChangeStatus| {
            changes
                .iter()
                .filter(|c| c.status == status && apps.contains(&c.application))
                .count() as u64
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

    Ok(Reconciled {
        as_of,
        collection: collection.name.clone(),
        collected_at: collection.collected_at,
        inputs: collection.inputs.clone(),
        applications: collection.applications.clone(),
        identities: collection.identities.clone(),
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
    })
}
