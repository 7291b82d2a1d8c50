//! Change lifecycles: every sync-log event, in any order, folded into one
//! record per change — requested → attempts → confirmed, failed, or pending.
//!
//! Events are deduplicated on the CloudEvents (`source`, `id`) pair, never on
//! `id` alone (CloudEvents 1.0 §`id`: "Consumers MAY assume that Events with
//! identical `source` and `id` are duplicates"). A change re-requested under
//! the same idempotency key is one change. A successful delivery is not a
//! confirmation: only `change.confirmed` confirms.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use crate::{FastMap, FastSet};

use sha2::{Digest, Sha256};

use super::model::{Anomaly, AnomalyKind, Change, ChangeStatus, EventStats};
use crate::ingest::model::{AttemptOutcome, ConfirmMethod, Event, EventBody, Operation, SourceRef};
use crate::time::{format_timestamp, Span, Timestamp};

/// The most replays listed one by one as anomalies; all are counted.
const MAX_LISTED_REPLAYS: usize = 100;

#[derive(Clone, Debug)]
struct Request {
    operation: Operation,
    identity: Arc<str>,
    application: Arc<str>,
    entitlement: Option<Arc<str>>,
    requester: Option<Arc<str>>,
    approval: Option<String>,
    ticket: Option<String>,
    batch: Option<Arc<str>>,
    at: Timestamp,
    source: SourceRef,
}

#[derive(Debug, Default)]
struct ChangeAcc {
    request: Option<Box<Request>>,
    redeliveries: u32,
    attempts: Attempts,
    confirmed: Option<(Timestamp, ConfirmMethod, SourceRef)>,
    /// Boxed: few changes fail, and inline it would take 96 bytes of every
    /// accumulator.
    failed: Option<Box<(Timestamp, String, SourceRef)>>,
}

impl ChangeAcc {
    /// Where each event after the request was read: the attempts in
    /// attempt order, then the confirmation and the failure.
    fn event_refs(&self) -> impl Iterator<Item = SourceRef> + '_ {
        self.attempts
            .values()
            .map(|a| a.3.clone())
            .chain(self.confirmed.as_ref().map(|c| c.2.clone()))
            .chain(self.failed.as_ref().map(|f| f.2.clone()))
    }
}

/// One delivery attempt: when, its outcome, its error and where it was read.
type Attempt = (Timestamp, AttemptOutcome, Option<String>, SourceRef);

/// A change's delivery attempts by attempt number, the first copy of each
/// number kept, in attempt order. A sorted vector rather than a `BTreeMap`:
/// a change has a few attempts, and a map's first node (room for eleven)
/// costs about a kilobyte per change, millions of times over. The vector
/// grows one attempt at a time for the same reason.
#[derive(Debug, Default)]
struct Attempts(Vec<(u32, Attempt)>);

impl Attempts {
    /// Records attempt `n` unless an attempt with that number is known.
    fn insert_first(&mut self, n: u32, attempt: Attempt) {
        if let Err(i) = self.0.binary_search_by_key(&n, |(k, _)| *k) {
            // Room for exactly one more: a vector's first push makes room
            // for four (416 bytes), and most changes have one or two
            // attempts, millions of times over.
            self.0.reserve_exact(1);
            self.0.insert(i, (n, attempt));
        }
    }

    /// The attempts in attempt order.
    fn values(&self) -> impl DoubleEndedIterator<Item = &Attempt> {
        self.0.iter().map(|(_, a)| a)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Connector-level events, kept for the health computation.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectorAcc {
    pub(crate) last_heartbeat: Option<(Timestamp, SourceRef)>,
    pub(crate) last_seen: Option<Timestamp>,
    pub(crate) errors: u64,
    pub(crate) last_error: Option<(Timestamp, String, SourceRef)>,
    pub(crate) failed_attempts: u64,
}

/// Folds events into change lifecycles and connector activity.
#[derive(Debug)]
pub(crate) struct Lifecycles {
    as_of: Timestamp,
    /// First 16 bytes of SHA-256(source NUL id) → first 8 bytes of the line's
    /// SHA-256 and where it was first seen. 128 bits make an accidental
    /// collision among billions of events negligible, and keep memory small.
    seen: FastMap<[u8; 16], ([u8; 8], u32)>,
    /// Where each distinct event was first seen: (index into `files`, line).
    /// Kept compact: one entry per distinct event.
    first_seen: Vec<(u32, u32)>,
    /// Log file names, interned.
    files: Vec<std::sync::Arc<str>>,
    /// Boxed: the table then holds a pointer per change, not the whole
    /// accumulator (it keeps room for an eighth more entries than it holds,
    /// and is allocated in powers of two), and `finish` frees each one as
    /// it turns it into a [`Change`].
    changes: FastMap<String, Box<ChangeAcc>>,
    /// Connector activity by connector id.
    pub(crate) connectors: BTreeMap<String, ConnectorAcc>,
    /// Application id → connector id.
    app_connector: FastMap<String, String>,
    /// The identities, applications, entitlements, requesters and batches
    /// of requests, each stored once (millions of changes share them).
    strings: FastSet<Arc<str>>,
    pub(crate) stats: EventStats,
    pub(crate) anomalies: Vec<Anomaly>,
    listed_replays: usize,
}

impl Lifecycles {
    /// A fresh accumulator for `--as-of` and the collection's applications.
    pub(crate) fn new(as_of: Timestamp, app_connector: FastMap<String, String>) -> Self {
        let mut connectors = BTreeMap::new();
        for c in app_connector.values() {
            connectors.insert(c.clone(), ConnectorAcc::default());
        }
        Lifecycles {
            as_of,
            seen: FastMap::default(),
            first_seen: Vec::new(),
            files: Vec::new(),
            changes: FastMap::default(),
            connectors,
            app_connector,
            strings: FastSet::default(),
            stats: EventStats::default(),
            anomalies: Vec::new(),
            listed_replays: 0,
        }
    }

    /// Takes one event.
    pub(crate) fn push(&mut self, event: Event) {
        self.stats.read += 1;
        let mut h = Sha256::new();
        h.update(event.ce_source.as_bytes());
        h.update([0u8]);
        h.update(event.ce_id.as_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let mut line_hash = [0u8; 8];
        line_hash.copy_from_slice(&event.source.sha256.as_bytes()[..8]);
        if let Some((first_hash, first_idx)) = self.seen.get(&key) {
            self.stats.replays += 1;
            let conflicting = *first_hash != line_hash;
            if conflicting || self.listed_replays < MAX_LISTED_REPLAYS {
                self.listed_replays += 1;
                // Only the position of the first copy is kept (its bytes are
                // in the input files, hashed into the manifest).
                let first = self
                    .first_seen
                    .get(*first_idx as usize)
                    .and_then(|(f, line)| Some((self.files.get(*f as usize)?.clone(), *line)));
                let (kind, what) = if conflicting {
                    (
                        AnomalyKind::ConflictingReplay,
                        "repeats the (`source`, `id`) of an earlier event with different content; the first copy is used",
                    )
                } else {
                    (
                        AnomalyKind::Replay,
                        "repeats an earlier event; counted once",
                    )
                };
                let evidence = vec![event.source.clone()];
                self.anomalies.push(Anomaly {
                    kind,
                    subject: format!("{} {}", event.ce_source, event.ce_id),
                    detail: format!(
                        "{}:{} {what}{}",
                        event.source.file,
                        event.source.line,
                        first
                            .map(|(f, line)| format!(" (first at {f}:{line})"))
                            .unwrap_or_default()
                    ),
                    evidence,
                });
            }
            return;
        }
        self.seen
            .insert(key, (line_hash, self.first_seen.len() as u32));
        let file_idx = match self.files.last() {
            Some(f) if *f == event.source.file => self.files.len() - 1,
            _ => match self.files.iter().position(|f| *f == event.source.file) {
                Some(i) => i,
                None => {
                    self.files.push(event.source.file.clone());
                    self.files.len() - 1
                }
            },
        };
        self.first_seen.push((
            file_idx as u32,
            u32::try_from(event.source.line).unwrap_or(u32::MAX),
        ));
        self.stats.unique += 1;
        if event.time > self.as_of {
            self.stats.after_as_of += 1;
            return;
        }
        let ty = match &event.body {
            EventBody::ChangeRequested { .. } => "change.requested",
            EventBody::DeliveryAttempted { .. } => "change.attempted",
            EventBody::ChangeConfirmed { .. } => "change.confirmed",
            EventBody::ChangeFailed { .. } => "change.failed",
            EventBody::Heartbeat { .. } => "connector.heartbeat",
            EventBody::ConnectorError { .. } => "connector.error",
        };
        match self.stats.by_type.get_mut(ty) {
            Some(n) => *n += 1,
            None => {
                self.stats.by_type.insert(ty.to_owned(), 1);
            }
        }
        let time = event.time;
        match event.body {
            EventBody::ChangeRequested {
                idempotency_key,
                operation,
                identity,
                application,
                entitlement,
                requester,
                approval,
                ticket,
                batch,
            } => {
                self.touch_app(&application, time);
                let request = Request {
                    operation,
                    identity: self.intern(identity),
                    application: self.intern(application),
                    entitlement: entitlement.map(|e| self.intern(e)),
                    requester: requester.map(|r| self.intern(r)),
                    approval,
                    ticket,
                    batch: batch.map(|b| self.intern(b)),
                    at: time,
                    source: event.source,
                };
                let acc = self.changes.entry(idempotency_key.clone()).or_default();
                match &mut acc.request {
                    None => acc.request = Some(Box::new(request)),
                    Some(first) => {
                        self.stats.redeliveries += 1;
                        acc.redeliveries += 1;
                        if first.operation != request.operation
                            || first.identity != request.identity
                            || first.application != request.application
                            || first.entitlement != request.entitlement
                        {
                            self.anomalies.push(Anomaly {
                                kind: AnomalyKind::IdempotencyConflict,
                                subject: idempotency_key.clone(),
                                detail: format!(
                                    "re-requested under the same idempotency key `{idempotency_key}` with different content; the earliest request is used"
                                ),
                                evidence: vec![first.source.clone(), request.source.clone()],
                            });
                        }
                        // The earliest request defines the change.
                        if request.at < first.at {
                            **first = request;
                        }
                    }
                }
            }
            EventBody::DeliveryAttempted {
                idempotency_key,
                attempt,
                outcome,
                error,
            } => {
                // Failed attempts are credited to a connector in `finish`,
                // once the request (and so the application) is known.
                let acc = self.changes.entry(idempotency_key).or_default();
                acc.attempts
                    .insert_first(attempt, (time, outcome, error, event.source));
            }
            EventBody::ChangeConfirmed {
                idempotency_key,
                method,
            } => {
                let acc = self.changes.entry(idempotency_key).or_default();
                if acc.confirmed.as_ref().is_none_or(|(t, _, _)| time < *t) {
                    acc.confirmed = Some((time, method, event.source));
                }
            }
            EventBody::ChangeFailed {
                idempotency_key,
                reason,
            } => {
                let acc = self.changes.entry(idempotency_key).or_default();
                if acc.failed.as_ref().is_none_or(|f| time < f.0) {
                    acc.failed = Some(Box::new((time, reason, event.source)));
                }
            }
            EventBody::Heartbeat { connector } => {
                let c = self.connectors.entry(connector).or_default();
                if c.last_heartbeat.as_ref().is_none_or(|(t, _)| time > *t) {
                    c.last_heartbeat = Some((time, event.source));
                }
                c.last_seen = c.last_seen.max(Some(time));
            }
            EventBody::ConnectorError { connector, error } => {
                let c = self.connectors.entry(connector).or_default();
                c.errors += 1;
                if c.last_error.as_ref().is_none_or(|(t, _, _)| time > *t) {
                    c.last_error = Some((time, error, event.source));
                }
                c.last_seen = c.last_seen.max(Some(time));
            }
        }
    }

    /// `s`, stored once.
    fn intern(&mut self, s: String) -> Arc<str> {
        match self.strings.get(s.as_str()) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(s);
                self.strings.insert(shared.clone());
                shared
            }
        }
    }

    fn touch_app(&mut self, application: &str, time: Timestamp) {
        if let Some(conn) = self.app_connector.get(application) {
            if let Some(c) = self.connectors.get_mut(conn) {
                c.last_seen = c.last_seen.max(Some(time));
            }
        }
    }

    /// Events of a change that was never requested: an anomaly.
    fn orphan(&mut self, key: String, acc: &ChangeAcc) {
        let mut evidence: Vec<SourceRef> = acc.event_refs().collect();
        evidence.sort();
        let what = match (&acc.confirmed, &acc.failed) {
            (Some(_), _) => "a confirmation",
            (None, Some(_)) => "a failure",
            (None, None) => "delivery attempts",
        };
        self.anomalies.push(Anomaly {
            kind: AnomalyKind::OrphanEvent,
            detail: format!(
                "the log holds {what} for idempotency key `{key}` but no request: a confirmation with no request proves nothing"
            ),
            subject: key,
            evidence,
        });
    }

    /// Finishes: one [`Change`] per requested change, sorted by request time
    /// and key; orphan events become anomalies.
    pub(crate) fn finish(
        mut self,
    ) -> (
        Vec<Change>,
        BTreeMap<String, ConnectorAcc>,
        EventStats,
        Vec<Anomaly>,
    ) {
        // The accumulators are sorted (by request time, then key: the order
        // of `changes`) before they become changes, so the sort moves
        // pointers rather than whole records; taken from the map in its
        // order, which the sort (keys are unique) makes irrelevant.
        // Every event is in: the deduplication table (tens of bytes per
        // distinct event) is done with, and is freed before the changes are
        // built, when memory peaks.
        self.seen = FastMap::default();
        self.first_seen = Vec::new();
        self.strings = FastSet::default();
        let accumulated = std::mem::take(&mut self.changes);
        let mut requested: Vec<(String, Box<Request>, Box<ChangeAcc>)> =
            Vec::with_capacity(accumulated.len());
        for (key, mut acc) in accumulated {
            match acc.request.take() {
                Some(req) => requested.push((key, req, acc)),
                None => self.orphan(key, &acc),
            }
        }
        requested.par_sort_unstable_by(|a, b| (a.1.at, &a.0).cmp(&(b.1.at, &b.0)));
        // What the changes tell about their connectors, and changes
        // confirmed before they were requested: summed per connector and
        // collected in parallel (neither depends on the order).
        let app_connector = &self.app_connector;
        let (credits, early) = requested
            .par_iter()
            .with_min_len(4096)
            .fold(
                || (FastMap::<&str, (Option<Timestamp>, u64)>::default(), Vec::new()),
                |(mut credits, mut early), (key, req, acc)| {
                    // Attempts and outcomes are credited to the application's
                    // connector; every event of a change shows it was alive.
                    if let Some(conn) = app_connector.get(&*req.application) {
                        let seen = acc
                            .attempts
                            .values()
                            .map(|a| a.0)
                            .chain(acc.confirmed.as_ref().map(|c| c.0))
                            .chain(acc.failed.as_ref().map(|f| f.0))
                            .max();
                        let failed = acc
                            .attempts
                            .values()
                            .filter(|a| a.1 != AttemptOutcome::Success)
                            .count() as u64;
                        let e = credits.entry(conn.as_str()).or_default();
                        e.0 = e.0.max(seen);
                        e.1 += failed;
                    }
                    if let Some((t, _, src)) = &acc.confirmed {
                        if *t < req.at {
                            early.push(Anomaly {
                                kind: AnomalyKind::ConfirmedBeforeRequested,
                                subject: key.clone(),
                                detail: format!(
                                    "confirmed at {} before it was requested at {}; latency counted as zero",
                                    format_timestamp(t),
                                    format_timestamp(&req.at)
                                ),
                                evidence: vec![req.source.clone(), src.clone()],
                            });
                        }
                    }
                    (credits, early)
                },
            )
            .reduce(
                || (FastMap::default(), Vec::new()),
                |(mut a, mut early_a), (b, early_b)| {
                    for (conn, (seen, failed)) in b {
                        let e = a.entry(conn).or_default();
                        e.0 = e.0.max(seen);
                        e.1 += failed;
                    }
                    early_a.extend(early_b);
                    (a, early_a)
                },
            );
        for (conn, (seen, failed)) in credits {
            if let Some(c) = self.connectors.get_mut(conn) {
                c.last_seen = c.last_seen.max(seen);
                c.failed_attempts += failed;
            }
        }
        self.anomalies.extend(early);
        // Each accumulator becomes a change, in parallel and in order.
        let as_of = self.as_of;
        let changes: Vec<Change> = requested
            .into_par_iter()
            .with_min_len(4096)
            .map(|(key, req, acc)| to_change(key, *req, *acc, as_of))
            .collect();
        self.anomalies.sort_by(|a, b| {
            (a.kind, a.evidence.first(), &a.subject, &a.detail).cmp(&(
                b.kind,
                b.evidence.first(),
                &b.subject,
                &b.detail,
            ))
        });
        (changes, self.connectors, self.stats, self.anomalies)
    }
}

/// A requested change's accumulated events as a [`Change`].
fn to_change(key: String, req: Request, acc: ChangeAcc, as_of: Timestamp) -> Change {
    let status = if acc.confirmed.is_some() {
        ChangeStatus::Confirmed
    } else if acc.failed.is_some() {
        ChangeStatus::Failed
    } else {
        ChangeStatus::Pending
    };
    let last = acc.attempts.values().next_back();
    let mut evidence = Vec::with_capacity(1 + acc.attempts.len() + 2);
    evidence.push(req.source);
    evidence.extend(acc.event_refs());
    Change {
        operation: req.operation,
        identity: req.identity,
        application: req.application,
        entitlement: req.entitlement,
        requester: req.requester,
        approval: req.approval,
        ticket: req.ticket,
        batch: req.batch,
        requested_at: req.at,
        status,
        confirmed_at: acc.confirmed.as_ref().map(|c| c.0),
        confirm_method: acc.confirmed.as_ref().map(|c| c.1),
        failed_at: acc.failed.as_ref().map(|f| f.0),
        failure_reason: acc.failed.as_ref().map(|f| f.1.clone()),
        latency: acc.confirmed.as_ref().map(|c| Span::between(&req.at, &c.0)),
        pending_for: if status == ChangeStatus::Confirmed {
            None
        } else {
            Some(Span::between(&req.at, &as_of))
        },
        attempts: acc.attempts.len() as u32,
        last_outcome: last.map(|a| a.1),
        last_error: last.and_then(|a| a.2.clone()),
        redeliveries: acc.redeliveries,
        evidence,
        key,
    }
}
