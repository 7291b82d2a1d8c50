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
mod json;
mod lifecycle;
pub mod model;
pub mod summary;

use crate::ingest::{Collection, IngestError};
use crate::time::{Span, Timestamp};
pub use json::JsonError;
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
pub fn run(mut collection: Collection, options: &Options) -> Result<Reconciled, IngestError> {
    let as_of = options.as_of.unwrap_or(collection.collected_at);
    let log_bytes = collection
        .inputs
        .iter()
        .filter(|i| collection.sync_logs.contains(&i.path))
        .map(|i| i.size)
        .sum();
    let mut lifecycles = lifecycle::Lifecycles::new(
        as_of,
        app_connectors(&collection.applications),
        lifecycle::bucket_count(log_bytes),
    );
    let rejected = collection.read_events(options.quarantine, &mut |e| lifecycles.push(e))?;
    let snapshots = std::mem::take(&mut collection.snapshots);
    let known = collection
        .inputs
        .iter()
        .map(|i| (i.path.clone(), (i.size, i.sha256.clone())))
        .collect();
    let source = Source::Parsed {
        slots: snapshots
            .into_iter()
            .map(|s| std::sync::Mutex::new(Some(s)))
            .collect(),
        known,
    };
    Prepared::new(collection, source, lifecycles, rejected, as_of)?.collect()
}

/// Loads the collection at `root` and reconciles it, reading the sync logs
/// on one core while the desired state is parsed on the other; snapshots are
/// then read and reconciled one application at a time. The result is the
/// same as [`crate::ingest::load`] followed by [`run`].
pub fn load_and_run(root: &std::path::Path, options: &Options) -> Result<Reconciled, IngestError> {
    prepare(root, options)?.collect()
}

/// Loads the collection at `root` and folds its sync logs (on one core,
/// while the desired state is parsed on the other), ready for its
/// applications to be reconciled one at a time with
/// [`Prepared::reconcile_apps`]. Snapshots are not read yet.
pub fn prepare(root: &std::path::Path, options: &Options) -> Result<Prepared, IngestError> {
    let (deferred, (lifecycles, as_of), rejected) = crate::ingest::load_deferred(
        root,
        options.quarantine,
        |pre| {
            let as_of = options.as_of.unwrap_or(pre.collected_at);
            (
                lifecycle::Lifecycles::new(
                    as_of,
                    app_connectors(pre.applications),
                    lifecycle::bucket_count(pre.log_bytes),
                ),
                as_of,
            )
        },
        |(lifecycles, _), event| lifecycles.push(event),
    )?;
    let mut deferred = deferred;
    let collection = std::mem::replace(&mut deferred.collection, empty_collection(root));
    Prepared::new(
        collection,
        Source::Deferred(Box::new(deferred)),
        lifecycles,
        rejected,
        as_of,
    )
}

fn empty_collection(root: &std::path::Path) -> Collection {
    Collection {
        root: root.to_path_buf(),
        name: String::new(),
        collected_at: Timestamp::default(),
        applications: Vec::new(),
        identities: Vec::new(),
        assignments: Default::default(),
        snapshots: Vec::new(),
        sync_logs: Vec::new(),
        exceptions: None,
        inputs: Vec::new(),
    }
}

fn app_connectors(apps: &[crate::ingest::model::Application]) -> crate::FastMap<String, String> {
    apps.iter()
        .map(|a| (a.id.clone(), a.connector.clone()))
        .collect()
}

/// Where the snapshots come from.
enum Source {
    /// Parsed already; each is taken out once, by the worker that reconciles
    /// its application.
    Parsed {
        slots: Vec<std::sync::Mutex<Option<crate::ingest::model::Snapshot>>>,
        known: Known,
    },
    /// Read from disk as each application is reconciled.
    Deferred(Box<crate::ingest::Deferred>),
}

type Known = HashMap<String, (u64, String)>;

/// The sizes and digests of the snapshot files read while reconciling.
#[derive(Debug, Default)]
pub struct SnapshotDigests(Known);

/// One application's reconciled access: the per-application part of
/// [`Reconciled`], each list sorted.
#[derive(Debug)]
pub struct AppAccess {
    /// Effective grants, sorted by (account, entitlement).
    pub grants: Vec<model::Grant>,
    /// Desired assignments' states, sorted by (identity, entitlement).
    pub assignments: Vec<model::AssignmentState>,
    /// Accounts, sorted by name.
    pub accounts: Vec<model::AccountState>,
    /// Drift records (unsorted).
    pub drift: Vec<model::Drift>,
    /// The snapshot's age and size.
    pub snapshot: SnapshotFreshness,
    /// The snapshot's files as evidence (whole files: line 0), by path.
    pub evidence: Vec<crate::ingest::model::SourceRef>,
}

/// A collection whose sync logs are folded into change lifecycles and whose
/// connector health is known: everything but the per-application results.
/// [`Prepared::reconcile_apps`] reconciles the applications one at a time
/// (in parallel), reading each snapshot only then, so a caller that keeps
/// only what it needs of each application never holds them all.
pub struct Prepared {
    facts: Reconciled,
    desired: crate::ingest::assignments::DesiredAssignments,
    changes: lifecycle::ChangeStore,
    source: Source,
}

/// An error reading or writing the temporary file of changes.
fn change_store_error(source: std::io::Error) -> IngestError {
    IngestError::Io {
        path: std::path::PathBuf::from("(temporary file of the sync log's changes)"),
        source,
    }
}

impl Prepared {
    fn new(
        collection: Collection,
        source: Source,
        lifecycles: lifecycle::Lifecycles,
        rejected: Vec<crate::ingest::Rejected>,
        as_of: Timestamp,
    ) -> Result<Self, IngestError> {
        let (mut changes, connector_acc, events, anomalies) =
            lifecycles.finish().map_err(change_store_error)?;
        let Collection {
            name,
            collected_at,
            applications,
            identities,
            assignments: desired,
            inputs,
            ..
        } = collection;
        let connectors = connector_health(&applications, &changes, connector_acc, as_of);
        let change_figures = changes.take_figures();
        Ok(Prepared {
            facts: Reconciled {
                as_of,
                collection: name,
                collected_at,
                inputs,
                applications,
                identities,
                events,
                changes: Vec::new(),
                change_figures,
                grants: Vec::new(),
                assignments: Vec::new(),
                accounts: Vec::new(),
                drift: Vec::new(),
                connectors,
                snapshots: Vec::new(),
                anomalies,
                rejected,
            },
            desired,
            changes,
            source,
        })
    }

    /// Everything reconciled so far: the changes' figures, connector
    /// health, events, identities and applications. Its changes and its
    /// per-application lists (grants, assignments, accounts, drift,
    /// snapshots) are empty (each application's changes are read from disk
    /// when it is reconciled), and for a collection read with [`prepare`] so
    /// are its `inputs` until [`Prepared::finish`].
    pub fn facts(&self) -> &Reconciled {
        &self.facts
    }

    /// Reconciles every application (in parallel), reading its snapshot
    /// and dropping it once `visit` has seen the result (with the
    /// application's changes, in request order). Returns what
    /// `visit` returned, in application order, and the snapshot digests for
    /// [`Prepared::finish`]. Invalid snapshots are reported together, in
    /// application order, as loading the collection would.
    pub fn reconcile_apps<T, F>(&self, visit: F) -> Result<(Vec<T>, SnapshotDigests), IngestError>
    where
        T: Send,
        F: Fn(AppAccess, &[&model::Change]) -> T + Sync,
    {
        let f = &self.facts;
        // The lookups every application shares, built side by side. Changes
        // are read and indexed per application, inside its task.
        let (by_id, account_index) = rayon::join(
            || -> crate::FastMap<&str, &crate::ingest::model::Identity> {
                f.identities.iter().map(|i| (i.id.as_str(), i)).collect()
            },
            || access::AccountIndex::new(&f.identities),
        );
        let count = match &self.source {
            Source::Parsed { slots, .. } => slots.len(),
            Source::Deferred(d) => d.specs.len(),
        };
        type Outcome<T> = Result<(T, Known), Vec<(String, crate::ingest::error::Problems)>>;
        let outcomes: Vec<Result<Outcome<T>, IngestError>> = (0..count)
            .into_par_iter()
            // One application per task: applications differ in size by
            // orders of magnitude, and rayon's adaptive splitting otherwise
            // leaves the last few thousand of them to one core (measured: a
            // 5 s tail with the other core idle on W10).
            .with_max_len(1)
            .map(|i| {
                let (snapshot, digests) = match &self.source {
                    Source::Parsed { slots, .. } => {
                        let taken = slots[i].lock().map(|mut s| s.take()).ok().flatten();
                        let Some(s) = taken else {
                            unreachable!("each snapshot is reconciled once")
                        };
                        (s, Known::new())
                    }
                    Source::Deferred(d) => match d.read_snapshot(&d.specs[i])? {
                        (Ok(s), digests) => (s, digests),
                        (Err(problems), _) => return Ok(Err(problems)),
                    },
                };
                let known = match &self.source {
                    Source::Parsed { known, .. } => known,
                    Source::Deferred(_) => &digests,
                };
                let evidence = snapshot_evidence(&snapshot.files, |file| {
                    known.get(file).map(|(_, hex)| hex.as_str())
                });
                // Unpacked for this application only, dropped with it.
                let unpacked =
                    self.desired
                        .of_application(&snapshot.application)
                        .map_err(|source| IngestError::Io {
                            path: std::path::PathBuf::from(
                                "(temporary file of the desired assignments)",
                            ),
                            source,
                        })?;
                let app_assignments: Vec<&crate::ingest::model::Assignment> =
                    unpacked.iter().collect();
                let app_changes = self
                    .changes
                    .of_application(&snapshot.application)
                    .map_err(change_store_error)?;
                let app_changes: Vec<&model::Change> = app_changes.iter().collect();
                let index = access::ChangeIndex::new(app_changes.iter().copied());
                let mut r = access::reconcile_snapshot(
                    &snapshot,
                    &by_id,
                    &account_index,
                    &app_assignments,
                    &index,
                    f.as_of,
                );
                r.grants.sort_by(|a, b| grant_key(a).cmp(&grant_key(b)));
                r.assignments
                    .sort_by(|a, b| assignment_key(a).cmp(&assignment_key(b)));
                r.accounts
                    .sort_by(|a, b| account_key(a).cmp(&account_key(b)));
                let freshness = SnapshotFreshness {
                    age: Span::between(&snapshot.taken_at, &f.as_of),
                    accounts: snapshot.accounts.len(),
                    groups: snapshot.groups.len(),
                    grants: r.grants.len(),
                    application: snapshot.application,
                    format: snapshot.format,
                    taken_at: snapshot.taken_at,
                    files: snapshot.files,
                };
                let access = AppAccess {
                    grants: r.grants,
                    assignments: r.assignments,
                    accounts: r.accounts,
                    drift: r.drift,
                    snapshot: freshness,
                    evidence,
                };
                Ok(Ok((visit(access, &app_changes), digests)))
            })
            .collect();
        let mut results = Vec::with_capacity(count);
        let mut known = Known::new();
        let mut errors = Vec::new();
        for outcome in outcomes {
            match outcome? {
                Ok((t, digests)) => {
                    results.push(t);
                    known.extend(digests);
                }
                Err(problems) => crate::ingest::snapshot_problems(&mut errors, problems),
            }
        }
        crate::ingest::error::combine(errors)?;
        Ok((results, SnapshotDigests(known)))
    }

    /// The reconciled collection: the facts, with `apps` (what
    /// [`Prepared::reconcile_apps`] gave, in any order, holding as
    /// much of each application as the caller kept) gathered in, drift
    /// sorted, and every input's digest.
    pub fn finish(
        self,
        digests: SnapshotDigests,
        apps: Vec<AppAccess>,
    ) -> Result<Reconciled, IngestError> {
        Ok(self.finish_keeping_changes(digests, apps)?.0)
    }

    /// [`Prepared::finish`], and the store of changes, to read them from.
    fn finish_keeping_changes(
        self,
        digests: SnapshotDigests,
        mut apps: Vec<AppAccess>,
    ) -> Result<(Reconciled, lifecycle::ChangeStore), IngestError> {
        let Prepared {
            mut facts,
            desired,
            source,
            changes,
        } = self;
        // The desired assignments are done with: free them before the
        // results are gathered.
        drop(desired);
        if let Source::Deferred(mut d) = source {
            d.extend_known(digests.0);
            facts.inputs = d.inputs()?;
        }
        // In application order, each application's lists sorted by keys
        // that start with the application: the concatenations are sorted.
        apps.sort_by(|a, b| a.snapshot.application.cmp(&b.snapshot.application));
        // Gathered into vectors of the exact size (growing by doubling would
        // hold two copies at the peak).
        let total = |f: fn(&AppAccess) -> usize| apps.iter().map(f).sum();
        facts.grants = Vec::with_capacity(total(|r| r.grants.len()));
        facts.assignments = Vec::with_capacity(total(|r| r.assignments.len()));
        facts.accounts = Vec::with_capacity(total(|r| r.accounts.len()));
        facts.drift = Vec::with_capacity(total(|r| r.drift.len()));
        facts.snapshots = Vec::with_capacity(apps.len());
        for r in apps {
            facts.grants.extend(r.grants);
            facts.assignments.extend(r.assignments);
            facts.accounts.extend(r.accounts);
            facts.drift.extend(r.drift);
            facts.snapshots.push(r.snapshot);
        }
        facts.drift.sort_by(|a, b| {
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
        Ok((facts, changes))
    }

    /// Reconciles every application and keeps what the summary needs:
    /// everything but the changes and the per-application grants,
    /// assignments and accounts (counted in [`Reconciled::snapshots`] and
    /// [`Reconciled::change_figures`]). Memory follows the largest
    /// application, not the collection.
    pub fn counted(self) -> Result<Reconciled, IngestError> {
        let (apps, digests) = self.reconcile_apps(|mut a, _| {
            a.grants = Vec::new();
            a.assignments = Vec::new();
            a.accounts = Vec::new();
            a
        })?;
        self.finish(digests, apps)
    }

    /// Reconciles every application and keeps everything.
    fn collect(self) -> Result<Reconciled, IngestError> {
        let (apps, digests) = self.reconcile_apps(|a, _| a)?;
        let changes = self.changes.all().map_err(change_store_error)?;
        let mut r = self.finish(digests, apps)?;
        r.changes = changes;
        Ok(r)
    }
}

/// The changes of each application, in the order of `changes` (request
/// order).
pub(crate) fn changes_by_app(
    changes: &[model::Change],
) -> crate::FastMap<&str, Vec<&model::Change>> {
    let mut out: crate::FastMap<&str, Vec<&model::Change>> = crate::FastMap::default();
    for c in changes {
        out.entry(&*c.application).or_default().push(c);
    }
    out
}

/// A snapshot's files as whole-file evidence (line 0), sorted by path, each
/// with the SHA-256 (hex) `sha_of` gives for it; a file without one is left
/// out.
pub(crate) fn snapshot_evidence<'h>(
    files: &[String],
    sha_of: impl Fn(&str) -> Option<&'h str>,
) -> Vec<crate::ingest::model::SourceRef> {
    let mut evidence: Vec<crate::ingest::model::SourceRef> = files
        .iter()
        .filter_map(|file| {
            sha_of(file).map(|hex| crate::ingest::model::SourceRef {
                file: file.as_str().into(),
                line: 0,
                sha256: crate::ingest::digest::Sha256Digest::from_hex(hex).unwrap_or_default(),
            })
        })
        .collect();
    evidence.sort();
    evidence.dedup();
    evidence
}

/// Connector health from the folded events and the changes.
fn connector_health(
    applications: &[crate::ingest::model::Application],
    changes: &lifecycle::ChangeStore,
    connector_acc: BTreeMap<String, lifecycle::ConnectorAcc>,
    as_of: Timestamp,
) -> Vec<ConnectorHealth> {
    // Unfinished changes per application, counted once.
    let mut open_by_app: HashMap<&str, (u64, u64)> = HashMap::new();
    for (app, figures) in changes.figures() {
        let e = open_by_app.entry(app.as_str()).or_default();
        for f in figures {
            match f.status {
                ChangeStatus::Pending => e.0 += 1,
                ChangeStatus::Failed => e.1 += 1,
                ChangeStatus::Confirmed => {}
            }
        }
    }
    let mut apps_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in applications {
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
    connectors
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
