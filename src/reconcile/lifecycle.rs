//! Change lifecycles: every sync-log event, in any order, folded into one
//! record per change — requested → attempts → confirmed, failed, or pending.
//!
//! Events are deduplicated on the CloudEvents (`source`, `id`) pair, never on
//! `id` alone (CloudEvents 1.0 §`id`: "Consumers MAY assume that Events with
//! identical `source` and `id` are duplicates"). A change re-requested under
//! the same idempotency key is one change. A successful delivery is not a
//! confirmation: only `change.confirmed` confirms.
//!
//! One change's events can be in any log, so no change is known to be
//! complete before the last line is read. Rather than hold every change's
//! events until then, each change event is written, in read order, to one of
//! [`bucket_count`] temporary buckets chosen by its idempotency key; once every
//! line is read, the buckets are folded one at a time (two at once on two
//! cores), and each folded change goes to a [`ChangeStore`] on disk, indexed
//! by application. Memory holds one bucket's changes at a time, not all.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::io;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::FastMap;

use sha2::{Digest, Sha256};

use super::model::{
    Anomaly, AnomalyKind, Change, ChangeFigure as Figure, ChangeStatus, EventStats,
};
use crate::ingest::digest::Sha256Digest;
use crate::ingest::model::{
    AttemptOutcome, ChangeRequest as Requested, ConfirmMethod, Event, EventBody, SourceRef,
};
use crate::spool::{Buckets, Spool};
use crate::time::{format_timestamp, Span, Timestamp};

/// The most replays listed one by one as anomalies; all are counted.
const MAX_LISTED_REPLAYS: usize = 100;

/// Sync-log bytes per bucket of change events: about 20,000 events.
const LOG_BYTES_PER_BUCKET: u64 = 6 << 20;

/// How many buckets the change events of `log_bytes` of sync logs are spread
/// over: about [`LOG_BYTES_PER_BUCKET`] each, so that a bucket's changes fit
/// in a core's cache while it is folded (with 64 buckets for 10 M events,
/// folding took a third more CPU than with 512), but at least 64 and at
/// most 512, because each bucket keeps a write buffer (32 KiB) while the
/// logs are read. The count changes where events wait, never what they fold
/// to.
pub(crate) fn bucket_count(log_bytes: u64) -> usize {
    usize::try_from(log_bytes / LOG_BYTES_PER_BUCKET)
        .unwrap_or(usize::MAX)
        .clamp(64, 512)
}

/// An instant as stored: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Instant(i64, u32);

impl Instant {
    fn of(t: &Timestamp) -> Self {
        Instant(t.timestamp(), t.timestamp_subsec_nanos())
    }

    fn get(self) -> io::Result<Timestamp> {
        chrono::DateTime::from_timestamp(self.0, self.1).ok_or_else(|| corrupt("an instant"))
    }
}

/// Where a record was read: the log file (an index into the files read),
/// the line and the line's SHA-256.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Place {
    file: u32,
    line: u64,
    sha256: [u8; 32],
}

impl Place {
    fn source(&self, files: &[Arc<str>]) -> io::Result<SourceRef> {
        Ok(SourceRef {
            file: files
                .get(self.file as usize)
                .ok_or_else(|| corrupt("a log file index"))?
                .clone(),
            line: self.line,
            sha256: Sha256Digest::from_bytes(self.sha256),
        })
    }
}

/// A change event as written to its bucket. The key is borrowed from the
/// bucket's bytes when read back: most events repeat a key already folded.
#[derive(Debug, Serialize, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    time: Instant,
    place: Place,
    event: ChangeEvent,
}

#[derive(Debug, Serialize, Deserialize)]
enum ChangeEvent {
    Requested(Requested),
    Attempted {
        attempt: u32,
        outcome: AttemptOutcome,
        error: Option<String>,
    },
    Confirmed {
        method: ConfirmMethod,
    },
    Failed {
        reason: String,
    },
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a temporary file of change events holds a bad record ({what})"),
    )
}

/// A change's request: what it asks, when, and where it was read.
#[derive(Debug)]
struct Request {
    what: Requested,
    at: Timestamp,
    place: Place,
}

#[derive(Debug, Default)]
struct ChangeAcc {
    request: Option<Box<Request>>,
    redeliveries: u32,
    attempts: Attempts,
    confirmed: Option<(Timestamp, ConfirmMethod, Place)>,
    /// Boxed: few changes fail.
    failed: Option<Box<(Timestamp, String, Place)>>,
}

impl ChangeAcc {
    /// Where each event after the request was read: the attempts in
    /// attempt order, then the confirmation and the failure.
    fn event_places(&self) -> impl Iterator<Item = Place> + '_ {
        self.attempts
            .values()
            .map(|a| a.3)
            .chain(self.confirmed.as_ref().map(|c| c.2))
            .chain(self.failed.as_ref().map(|f| f.2))
    }
}

/// One delivery attempt: when, its outcome, its error and where it was read.
type Attempt = (Timestamp, AttemptOutcome, Option<String>, Place);

/// A change's delivery attempts by attempt number, the first copy of each
/// number kept, in attempt order. A sorted vector rather than a `BTreeMap`:
/// a change has a few attempts, and a map's first node (room for eleven)
/// costs about a kilobyte per change.
#[derive(Debug, Default)]
struct Attempts(Vec<(u32, Attempt)>);

impl Attempts {
    /// Records attempt `n` unless an attempt with that number is known.
    fn insert_first(&mut self, n: u32, attempt: Attempt) {
        if let Err(i) = self.0.binary_search_by_key(&n, |(k, _)| *k) {
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

/// How many tables the deduplication keys are spread over.
const SEEN_SHARDS: usize = 256;

/// What is kept of a distinct event to recognise its replays: the first 8
/// bytes of its line's SHA-256, and where it was read (an index into the
/// files read, and the line).
#[derive(Clone, Copy, Debug)]
struct FirstCopy {
    line_hash: [u8; 8],
    file: u32,
    line: u32,
}

/// Folds events into change lifecycles and connector activity.
#[derive(Debug)]
pub(crate) struct Lifecycles {
    as_of: Timestamp,
    /// First 16 bytes of SHA-256(source NUL id) → its first copy. 128 bits
    /// make an accidental collision among billions of events negligible,
    /// and keep memory small. In [`SEEN_SHARDS`] tables by the key's first
    /// byte: a table doubles when it fills, holding its old and new copies
    /// for a moment, and one table of millions of events doing so would add
    /// half its size to the peak.
    seen: Vec<FastMap<[u8; 16], FirstCopy>>,
    /// Log file names, interned.
    files: Vec<Arc<str>>,
    /// The change events, in read order, bucketed by idempotency key (a
    /// failed write is reported by `finish`).
    buckets: Buckets,
    /// Connector activity by connector id.
    pub(crate) connectors: BTreeMap<String, ConnectorAcc>,
    /// Application id → connector id.
    app_connector: FastMap<String, String>,
    pub(crate) stats: EventStats,
    pub(crate) anomalies: Vec<Anomaly>,
    listed_replays: usize,
}

impl Lifecycles {
    /// A fresh accumulator for `--as-of` and the collection's applications,
    /// with change events spread over `buckets` buckets (see
    /// [`bucket_count`]).
    pub(crate) fn new(
        as_of: Timestamp,
        app_connector: FastMap<String, String>,
        buckets: usize,
    ) -> Self {
        let mut connectors = BTreeMap::new();
        for c in app_connector.values() {
            connectors.insert(c.clone(), ConnectorAcc::default());
        }
        Lifecycles {
            as_of,
            seen: (0..SEEN_SHARDS).map(|_| FastMap::default()).collect(),
            files: Vec::new(),
            buckets: Buckets::new(buckets.max(1)),
            connectors,
            app_connector,
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
        // The file's index first, so the deduplication table is probed once
        // (an entry, not a lookup and then an insert): at millions of events
        // each probe is a cache miss.
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
        let shard = key[0] as usize % SEEN_SHARDS;
        match self.seen[shard].entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let first = *first.get();
                self.replay(&event, first, line_hash);
                return;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(FirstCopy {
                    line_hash,
                    file: file_idx as u32,
                    line: u32::try_from(event.source.line).unwrap_or(u32::MAX),
                });
            }
        }
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
        let place = Place {
            file: file_idx as u32,
            line: event.source.line,
            sha256: *event.source.sha256.as_bytes(),
        };
        let (key, event) = match event.body {
            EventBody::ChangeRequested {
                idempotency_key,
                request,
            } => {
                self.touch_app(&request.application, time);
                (idempotency_key, ChangeEvent::Requested(request))
            }
            // Failed attempts are credited to a connector once the request
            // (and so the application) is known.
            EventBody::DeliveryAttempted {
                idempotency_key,
                attempt,
                outcome,
                error,
            } => (
                idempotency_key,
                ChangeEvent::Attempted {
                    attempt,
                    outcome,
                    error,
                },
            ),
            EventBody::ChangeConfirmed {
                idempotency_key,
                method,
            } => (idempotency_key, ChangeEvent::Confirmed { method }),
            EventBody::ChangeFailed {
                idempotency_key,
                reason,
            } => (idempotency_key, ChangeEvent::Failed { reason }),
            EventBody::Heartbeat { connector } => {
                let c = self.connectors.entry(connector).or_default();
                if c.last_heartbeat.as_ref().is_none_or(|(t, _)| time > *t) {
                    c.last_heartbeat = Some((time, event.source));
                }
                c.last_seen = c.last_seen.max(Some(time));
                return;
            }
            EventBody::ConnectorError { connector, error } => {
                let c = self.connectors.entry(connector).or_default();
                c.errors += 1;
                if c.last_error.as_ref().is_none_or(|(t, _, _)| time > *t) {
                    c.last_error = Some((time, error, event.source));
                }
                c.last_seen = c.last_seen.max(Some(time));
                return;
            }
        };
        let bucket = bucket_of(&key);
        let record = Record {
            key: Cow::Owned(key),
            time: Instant::of(&time),
            place,
            event,
        };
        self.buckets.append(bucket, |out| {
            postcard::to_io(&record, out)
                .map(drop)
                .map_err(io::Error::other)
        });
    }

    /// Counts `event`, a copy of the event first read at `first`, and lists
    /// it as an anomaly: always when its line differs from the first copy's,
    /// else up to [`MAX_LISTED_REPLAYS`].
    fn replay(&mut self, event: &Event, first: FirstCopy, line_hash: [u8; 8]) {
        self.stats.replays += 1;
        let conflicting = first.line_hash != line_hash;
        if !conflicting && self.listed_replays >= MAX_LISTED_REPLAYS {
            return;
        }
        self.listed_replays += 1;
        // Only the position of the first copy is kept (its bytes are in the
        // input files, hashed into the manifest).
        let first = self
            .files
            .get(first.file as usize)
            .map(|f| (f.clone(), first.line));
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
            evidence: vec![event.source.clone()],
        });
    }

    fn touch_app(&mut self, application: &str, time: Timestamp) {
        if let Some(conn) = self.app_connector.get(application) {
            if let Some(c) = self.connectors.get_mut(conn) {
                c.last_seen = c.last_seen.max(Some(time));
            }
        }
    }

    /// Finishes: every bucket folded into changes (in parallel), stored by
    /// application; orphan events, idempotency conflicts and changes
    /// confirmed before they were requested become anomalies.
    pub(crate) fn finish(mut self) -> io::Result<Finished> {
        let buckets = std::mem::replace(&mut self.buckets, Buckets::new(0)).into_spools()?;
        // Every event is in: the deduplication table (tens of bytes per
        // distinct event) is done with.
        self.seen = Vec::new();
        let store = Mutex::new(StoreBuilder::new(self.files.clone()));
        let (as_of, files, app_connector) = (self.as_of, &self.files, &self.app_connector);
        let folded: Vec<io::Result<Folded>> = buckets
            .into_par_iter()
            .with_max_len(1)
            .map(|bucket| {
                let bytes = bucket.read_all()?;
                drop(bucket);
                let mut fold = Fold::default();
                let mut rest = bytes.as_slice();
                while !rest.is_empty() {
                    let (record, tail) = postcard::take_from_bytes::<Record>(rest)
                        .map_err(|_| corrupt("an event"))?;
                    fold.apply(record, files)?;
                    rest = tail;
                }
                // The keys borrow from `bytes`, which is dropped after this.
                fold.finish(files, app_connector, &store)
            })
            .collect();
        let mut credits: FastMap<&str, (Option<Timestamp>, u64)> = FastMap::default();
        for f in folded {
            let f = f?;
            self.stats.redeliveries += f.redeliveries;
            self.anomalies.extend(f.anomalies);
            for (conn, (seen, failed)) in f.credits {
                let e = credits.entry(conn).or_default();
                e.0 = e.0.max(seen);
                e.1 += failed;
            }
        }
        for (conn, (seen, failed)) in credits {
            if let Some(c) = self.connectors.get_mut(conn) {
                c.last_seen = c.last_seen.max(seen);
                c.failed_attempts += failed;
            }
        }
        self.anomalies.sort_by(|a, b| {
            (a.kind, a.evidence.first(), &a.subject, &a.detail).cmp(&(
                b.kind,
                b.evidence.first(),
                &b.subject,
                &b.detail,
            ))
        });
        let store = store
            .into_inner()
            .map_err(|_| io::Error::other("a thread failed while storing changes"))?
            .finish(as_of)?;
        Ok((store, self.connectors, self.stats, self.anomalies))
    }
}

/// What folding the sync logs gives: the changes, connector activity,
/// event counts and anomalies.
pub(crate) type Finished = (
    ChangeStore,
    BTreeMap<String, ConnectorAcc>,
    EventStats,
    Vec<Anomaly>,
);

/// The bucket of an idempotency key, before [`Buckets::append`] takes it
/// modulo the count: a fixed hash, so runs spread the same.
fn bucket_of(key: &str) -> usize {
    // Truncated where `usize` is narrower: any spread will do.
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) as usize
}

/// One bucket's change events, folded; keys borrow from the bucket's bytes.
#[derive(Default)]
struct Fold<'a> {
    changes: FastMap<Cow<'a, str>, ChangeAcc>,
    redeliveries: u64,
    anomalies: Vec<Anomaly>,
}

/// What folding a bucket told beyond its changes.
struct Folded<'c> {
    redeliveries: u64,
    anomalies: Vec<Anomaly>,
    /// Per connector: the latest event of its changes, and failed attempts.
    credits: FastMap<&'c str, (Option<Timestamp>, u64)>,
}

impl<'a> Fold<'a> {
    /// Folds one event, in read order.
    fn apply(&mut self, record: Record<'a>, files: &[Arc<str>]) -> io::Result<()> {
        let Record {
            key,
            time,
            place,
            event,
        } = record;
        let time = time.get()?;
        match event {
            ChangeEvent::Requested(what) => {
                let request = Request {
                    what,
                    at: time,
                    place,
                };
                use std::collections::hash_map::Entry;
                let mut acc = match self.changes.entry(key) {
                    Entry::Vacant(v) => {
                        v.insert(ChangeAcc::default()).request = Some(Box::new(request));
                        return Ok(());
                    }
                    Entry::Occupied(o) => o,
                };
                let key = acc.key().to_string();
                let acc = acc.get_mut();
                match &mut acc.request {
                    None => acc.request = Some(Box::new(request)),
                    Some(first) => {
                        self.redeliveries += 1;
                        acc.redeliveries += 1;
                        let (a, b) = (&first.what, &request.what);
                        if (a.operation, &a.identity, &a.application, &a.entitlement)
                            != (b.operation, &b.identity, &b.application, &b.entitlement)
                        {
                            self.anomalies.push(Anomaly {
                                kind: AnomalyKind::IdempotencyConflict,
                                detail: format!(
                                    "re-requested under the same idempotency key `{key}` with different content; the earliest request is used"
                                ),
                                subject: key,
                                evidence: vec![first.place.source(files)?, place.source(files)?],
                            });
                        }
                        // The earliest request defines the change.
                        if request.at < first.at {
                            **first = request;
                        }
                    }
                }
            }
            ChangeEvent::Attempted {
                attempt,
                outcome,
                error,
            } => {
                let acc = self.changes.entry(key).or_default();
                acc.attempts
                    .insert_first(attempt, (time, outcome, error, place));
            }
            ChangeEvent::Confirmed { method } => {
                let acc = self.changes.entry(key).or_default();
                if acc.confirmed.as_ref().is_none_or(|(t, _, _)| time < *t) {
                    acc.confirmed = Some((time, method, place));
                }
            }
            ChangeEvent::Failed { reason } => {
                let acc = self.changes.entry(key).or_default();
                if acc.failed.as_ref().is_none_or(|f| time < f.0) {
                    acc.failed = Some(Box::new((time, reason, place)));
                }
            }
        }
        Ok(())
    }
}

impl Fold<'_> {
    /// The folded changes, stored; what they tell about their connectors;
    /// orphan events and early confirmations as anomalies.
    fn finish<'c>(
        mut self,
        files: &[Arc<str>],
        app_connector: &'c FastMap<String, String>,
        store: &Mutex<StoreBuilder>,
    ) -> io::Result<Folded<'c>> {
        let mut credits: FastMap<&str, (Option<Timestamp>, u64)> = FastMap::default();
        let mut out = Vec::new();
        let mut entries = Vec::new();
        for (key, mut acc) in std::mem::take(&mut self.changes) {
            let Some(req) = acc.request.take() else {
                self.orphan(key.into_owned(), &acc, files)?;
                continue;
            };
            // Attempts and outcomes are credited to the application's
            // connector; every event of a change shows it was alive.
            if let Some(conn) = app_connector.get(&req.what.application) {
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
            if let Some((t, _, place)) = &acc.confirmed {
                if *t < req.at {
                    self.anomalies.push(Anomaly {
                        kind: AnomalyKind::ConfirmedBeforeRequested,
                        subject: key.to_string(),
                        detail: format!(
                            "confirmed at {} before it was requested at {}; latency counted as zero",
                            format_timestamp(t),
                            format_timestamp(&req.at)
                        ),
                        evidence: vec![req.place.source(files)?, place.source(files)?],
                    });
                }
            }
            let figure = Figure {
                status: status_of(acc.confirmed.is_some(), acc.failed.is_some()),
                removal: req.what.operation.is_removal(),
                latency: acc.confirmed.as_ref().map(|c| Span::between(&req.at, &c.0)),
            };
            let stored = StoredChange::new(key.into_owned(), *req, acc);
            let start = out.len();
            postcard::to_io(&stored, &mut out).map_err(io::Error::other)?;
            entries.push((stored.what.application, start, out.len() - start, figure));
        }
        store
            .lock()
            .map_err(|_| io::Error::other("a thread failed while storing changes"))?
            .add(&out, entries)?;
        Ok(Folded {
            redeliveries: self.redeliveries,
            anomalies: self.anomalies,
            credits,
        })
    }

    /// Events of a change that was never requested: an anomaly.
    fn orphan(&mut self, key: String, acc: &ChangeAcc, files: &[Arc<str>]) -> io::Result<()> {
        let mut evidence = acc
            .event_places()
            .map(|p| p.source(files))
            .collect::<io::Result<Vec<_>>>()?;
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
        Ok(())
    }
}

/// Where a change stands: a confirmation decides, then a failure; else it
/// is pending.
fn status_of(confirmed: bool, failed: bool) -> ChangeStatus {
    if confirmed {
        ChangeStatus::Confirmed
    } else if failed {
        ChangeStatus::Failed
    } else {
        ChangeStatus::Pending
    }
}

/// A folded change as stored: what becomes a [`Change`] when its
/// application is reconciled.
#[derive(Debug, Serialize, Deserialize)]
struct StoredChange {
    key: String,
    what: Requested,
    requested_at: Instant,
    confirmed: Option<(Instant, ConfirmMethod)>,
    failed: Option<(Instant, String)>,
    attempts: u32,
    last: Option<(AttemptOutcome, Option<String>)>,
    redeliveries: u32,
    /// The request, the attempts in attempt order, the confirmation and the
    /// failure.
    evidence: Vec<Place>,
}

impl StoredChange {
    fn new(key: String, req: Request, acc: ChangeAcc) -> Self {
        let mut evidence = Vec::with_capacity(1 + acc.attempts.len() + 2);
        evidence.push(req.place);
        evidence.extend(acc.event_places());
        let ChangeAcc {
            redeliveries,
            attempts,
            confirmed,
            failed,
            ..
        } = acc;
        let count = attempts.len() as u32;
        let last = attempts.0.into_iter().next_back().map(|(_, a)| (a.1, a.2));
        StoredChange {
            key,
            what: req.what,
            requested_at: Instant::of(&req.at),
            confirmed: confirmed.map(|(t, m, _)| (Instant::of(&t), m)),
            failed: failed.map(|f| {
                let (t, reason, _) = *f;
                (Instant::of(&t), reason)
            }),
            attempts: count,
            last,
            redeliveries,
            evidence,
        }
    }

    fn into_change(self, files: &[Arc<str>], as_of: Timestamp) -> io::Result<Change> {
        let status = status_of(self.confirmed.is_some(), self.failed.is_some());
        let requested_at = self.requested_at.get()?;
        let confirmed_at = self.confirmed.map(|(t, _)| t.get()).transpose()?;
        let (failed_at, failure_reason) = match self.failed {
            Some((t, reason)) => (Some(t.get()?), Some(reason)),
            None => (None, None),
        };
        let (last_outcome, last_error) = match self.last {
            Some((outcome, error)) => (Some(outcome), error),
            None => (None, None),
        };
        let what = self.what;
        Ok(Change {
            operation: what.operation,
            identity: what.identity.into(),
            application: what.application.into(),
            entitlement: what.entitlement.map(Into::into),
            requester: what.requester.map(Into::into),
            approval: what.approval,
            ticket: what.ticket,
            batch: what.batch.map(Into::into),
            requested_at,
            status,
            confirmed_at,
            confirm_method: self.confirmed.map(|c| c.1),
            failed_at,
            failure_reason,
            latency: confirmed_at.map(|t| Span::between(&requested_at, &t)),
            pending_for: if status == ChangeStatus::Confirmed {
                None
            } else {
                Some(Span::between(&requested_at, &as_of))
            },
            attempts: self.attempts,
            last_outcome,
            last_error,
            redeliveries: self.redeliveries,
            evidence: self
                .evidence
                .iter()
                .map(|p| p.source(files))
                .collect::<io::Result<_>>()?,
            key: self.key,
        })
    }
}

/// Where a stored change is: its application (an index into the store's
/// applications), and its bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    app: u32,
    len: u32,
    offset: u64,
}

/// Builds a [`ChangeStore`] from the buckets' folded changes, in any order.
struct StoreBuilder {
    spool: Spool,
    files: Vec<Arc<str>>,
    apps: FastMap<String, u32>,
    entries: Vec<Entry>,
    figures: Vec<(u32, Figure)>,
}

impl StoreBuilder {
    fn new(files: Vec<Arc<str>>) -> Self {
        StoreBuilder {
            spool: Spool::new(),
            files,
            apps: FastMap::default(),
            entries: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Adds a bucket's changes: their bytes, and each one's application,
    /// position in the bytes, length and figure.
    fn add(
        &mut self,
        bytes: &[u8],
        changes: Vec<(String, usize, usize, Figure)>,
    ) -> io::Result<()> {
        let base = self.spool.append(bytes)?;
        for (app, start, len, figure) in changes {
            let next = self.apps.len() as u32;
            let app = *self.apps.entry(app).or_insert(next);
            self.entries.push(Entry {
                app,
                len: u32::try_from(len).map_err(|_| corrupt("a change's length"))?,
                offset: base + start as u64,
            });
            self.figures.push((app, figure));
        }
        Ok(())
    }

    fn finish(mut self, as_of: Timestamp) -> io::Result<ChangeStore> {
        self.spool.flush()?;
        // Applications renumbered in name order, entries grouped by them.
        let (names, rank) = crate::strings::ranked(
            self.apps.into_iter().map(|(name, n)| (n, name)).collect(),
            Ord::cmp,
        );
        for e in &mut self.entries {
            e.app = rank[e.app as usize];
        }
        self.entries.sort_unstable_by_key(|e| (e.app, e.offset));
        let mut figures: Vec<(String, Vec<Figure>)> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for (app, f) in self.figures {
            figures[rank[app as usize] as usize].1.push(f);
        }
        // Buckets are folded in any order: the figures are sorted so that
        // what is kept does not depend on it.
        figures.par_iter_mut().for_each(|(_, f)| f.sort_unstable());
        Ok(ChangeStore {
            spool: self.spool,
            files: self.files,
            apps: names,
            entries: self.entries,
            figures,
            as_of,
        })
    }
}

/// Request order: by request time, then idempotency key (unique).
fn request_order(a: &Change, b: &Change) -> std::cmp::Ordering {
    (a.requested_at, &a.key).cmp(&(b.requested_at, &b.key))
}

/// Every folded change, on disk (or in memory when no temporary file can be
/// made), read back one application at a time.
#[derive(Debug)]
pub(crate) struct ChangeStore {
    spool: Spool,
    files: Vec<Arc<str>>,
    /// Application ids, sorted.
    apps: Vec<String>,
    /// Sorted by application.
    entries: Vec<Entry>,
    /// Each application's changes' figures (sorted), by application id.
    figures: Vec<(String, Vec<Figure>)>,
    as_of: Timestamp,
}

impl ChangeStore {
    /// The figures of every change, by application id (sorted).
    pub(crate) fn figures(&self) -> &[(String, Vec<Figure>)] {
        &self.figures
    }

    /// Takes the figures out (the summary keeps them).
    pub(crate) fn take_figures(&mut self) -> Vec<(String, Vec<Figure>)> {
        std::mem::take(&mut self.figures)
    }

    /// The changes of `application`, in request order (by request time,
    /// then idempotency key).
    pub(crate) fn of_application(&self, application: &str) -> io::Result<Vec<Change>> {
        let Ok(app) = self.apps.binary_search_by(|a| a.as_str().cmp(application)) else {
            return Ok(Vec::new());
        };
        let app = app as u32;
        let from = self.entries.partition_point(|e| e.app < app);
        let to = self.entries.partition_point(|e| e.app <= app);
        let mut out = self.read(&self.entries[from..to])?;
        out.sort_unstable_by(request_order);
        Ok(out)
    }

    /// Every change, in request order.
    pub(crate) fn all(&self) -> io::Result<Vec<Change>> {
        let mut out = self.read(&self.entries)?;
        out.par_sort_unstable_by(request_order);
        Ok(out)
    }

    /// Calls `visit` with every change, in request order (as [`Self::all`]
    /// gives them), holding one change at a time: the order is found from
    /// each change's request time and key, then each change is read again
    /// as it is visited. Memory holds the keys, not the changes.
    pub(crate) fn for_each_in_request_order(
        &self,
        mut visit: impl FnMut(&Change) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut order = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let bytes = self.spool.read_at(e.offset, e.len as usize)?;
                let stored: StoredChange =
                    postcard::from_bytes(&bytes).map_err(|_| corrupt("a change"))?;
                Ok((stored.requested_at.get()?, stored.key.into_boxed_str(), i))
            })
            .collect::<io::Result<Vec<_>>>()?;
        // INVARIANT: idempotency keys are unique (one change per key), so
        // (time, key) is a total order, the one `request_order` sorts by.
        order.par_sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, i) in order {
            let change = self.read(std::slice::from_ref(&self.entries[i]))?;
            for c in &change {
                visit(c)?;
            }
        }
        Ok(())
    }

    fn read(&self, entries: &[Entry]) -> io::Result<Vec<Change>> {
        entries
            .iter()
            .map(|e| {
                let bytes = self.spool.read_at(e.offset, e.len as usize)?;
                let stored: StoredChange =
                    postcard::from_bytes(&bytes).map_err(|_| corrupt("a change"))?;
                stored.into_change(&self.files, self.as_of)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::model::Operation;
    use crate::time::parse_timestamp;

    fn at(minute: u32) -> Timestamp {
        parse_timestamp(&format!("2026-11-20T10:{minute:02}:00Z")).unwrap()
    }

    fn event(n: u64, minute: u32, body: EventBody) -> Event {
        Event {
            ce_source: "https://iga.example.com".into(),
            ce_id: format!("e{n}"),
            time: at(minute),
            body,
            source: SourceRef {
                file: Arc::from(if n.is_multiple_of(2) {
                    "logs/a.jsonl"
                } else {
                    "logs/b.jsonl"
                }),
                line: n,
                sha256: Sha256Digest::of(&n.to_le_bytes()),
            },
        }
    }

    fn request(key: &str, app: &str, operation: Operation) -> EventBody {
        EventBody::ChangeRequested {
            idempotency_key: key.into(),
            request: Requested {
                operation,
                identity: "svc-etl".into(),
                application: app.into(),
                entitlement: Some("db:read".into()),
                requester: None,
                approval: Some("APR-1".into()),
                ticket: None,
                batch: None,
            },
        }
    }

    /// Lifecycles over `buckets` buckets, fed 300 changes of two applications
    /// (each requested, attempted and confirmed, the confirmations read
    /// first, from two files) and one orphan attempt.
    fn three_hundred_changes(buckets: usize) -> Lifecycles {
        let apps: FastMap<String, String> = [("crm", "c1"), ("erp", "c2")]
            .into_iter()
            .map(|(a, c)| (a.to_owned(), c.to_owned()))
            .collect();
        let mut l = Lifecycles::new(at(59), apps, buckets);
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        // Confirmations read before their requests, from both files.
        for i in 0..300u32 {
            let key = format!("k{i:03}");
            l.push(event(
                next(),
                30,
                EventBody::ChangeConfirmed {
                    idempotency_key: key.clone(),
                    method: ConfirmMethod::ReadBack,
                },
            ));
        }
        for i in 0..300u32 {
            let key = format!("k{i:03}");
            let app = if i.is_multiple_of(3) { "erp" } else { "crm" };
            let op = if i.is_multiple_of(2) {
                Operation::Revoke
            } else {
                Operation::Grant
            };
            l.push(event(next(), 10 + i % 7, request(&key, app, op)));
            l.push(event(
                next(),
                20,
                EventBody::DeliveryAttempted {
                    idempotency_key: key,
                    attempt: 1,
                    outcome: AttemptOutcome::Success,
                    error: None,
                },
            ));
        }
        // A key only attempted: an orphan, not a change.
        l.push(event(
            next(),
            40,
            EventBody::DeliveryAttempted {
                idempotency_key: "lonely".into(),
                attempt: 1,
                outcome: AttemptOutcome::Error,
                error: Some("timeout".into()),
            },
        ));
        l
    }

    /// Changes spread over every bucket come back whole, per application and
    /// all together, in request order, with their figures.
    #[test]
    fn changes_survive_the_buckets_and_the_store() {
        let (store, _, stats, anomalies) = three_hundred_changes(64).finish().unwrap();
        assert_eq!(stats.unique, 901);
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].kind, AnomalyKind::OrphanEvent);
        assert_eq!(anomalies[0].subject, "lonely");

        let all = store.all().unwrap();
        assert_eq!(all.len(), 300);
        assert!(all
            .windows(2)
            .all(|w| (w[0].requested_at, &w[0].key) < (w[1].requested_at, &w[1].key)));
        let c = all.iter().find(|c| c.key == "k004").unwrap();
        assert_eq!(c.status, ChangeStatus::Confirmed);
        assert_eq!(c.latency, Some(Span::between(&at(14), &at(30))));
        assert_eq!(c.operation, Operation::Revoke);
        assert_eq!(c.approval.as_deref(), Some("APR-1"));
        // The request, then the attempt, then the confirmation.
        let lines: Vec<u64> = c.evidence.iter().map(|e| e.line).collect();
        assert_eq!(lines, [309, 310, 5]);
        assert_eq!(&*c.evidence[2].file, "logs/b.jsonl");
        assert_eq!(c.evidence[2].sha256, Sha256Digest::of(&5u64.to_le_bytes()));

        for app in ["crm", "erp"] {
            let mine = store.of_application(app).unwrap();
            let expected: Vec<&Change> = all.iter().filter(|c| &*c.application == app).collect();
            assert_eq!(mine.len(), expected.len());
            for (a, b) in mine.iter().zip(expected) {
                assert_eq!(
                    serde_json::to_value(a).unwrap(),
                    serde_json::to_value(b).unwrap()
                );
            }
        }
        assert!(store.of_application("hr").unwrap().is_empty());
        let figures = store.figures();
        assert_eq!(
            figures.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            ["crm", "erp"]
        );
        assert_eq!(figures[1].1.len(), 100);
        assert_eq!(figures[0].1.iter().filter(|f| f.removal).count(), 100);
        assert!(figures
            .iter()
            .flat_map(|(_, f)| f)
            .all(|f| f.latency.is_some()));
    }

    /// Visiting the changes one at a time gives `all()`, in its order (many
    /// changes share a request time, so the keys decide), and a visitor's
    /// error stops the visit.
    #[test]
    fn changes_visited_one_at_a_time_are_all_in_request_order() {
        let (store, ..) = three_hundred_changes(7).finish().unwrap();
        let mut visited = Vec::new();
        store
            .for_each_in_request_order(|c| {
                visited.push(serde_json::to_string(c).unwrap());
                Ok(())
            })
            .unwrap();
        let all: Vec<String> = store
            .all()
            .unwrap()
            .iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect();
        assert_eq!(visited, all);

        let mut seen = 0;
        let stopped = store.for_each_in_request_order(|_| {
            seen += 1;
            if seen == 3 {
                Err(io::Error::other("stop"))
            } else {
                Ok(())
            }
        });
        assert_eq!(stopped.unwrap_err().to_string(), "stop");
        assert_eq!(seen, 3);
    }

    /// How many buckets the events are spread over changes nothing in what
    /// they fold to: the changes, their order, figures, counts and anomalies.
    #[test]
    fn the_bucket_count_does_not_change_the_result() {
        let folded = |buckets| {
            let (store, connectors, stats, anomalies) =
                three_hundred_changes(buckets).finish().unwrap();
            (
                serde_json::to_string(&store.all().unwrap()).unwrap(),
                format!("{:?}", store.figures()),
                format!("{connectors:?} {stats:?} {anomalies:?}"),
            )
        };
        let reference = folded(64);
        for buckets in [1, 7, 512] {
            assert_eq!(folded(buckets), reference, "{buckets} buckets");
        }
    }

    #[test]
    fn the_bucket_count_follows_the_logs_size_within_bounds() {
        assert_eq!(bucket_count(0), 64);
        assert_eq!(bucket_count(300 << 20), 64);
        assert_eq!(bucket_count(100 * LOG_BYTES_PER_BUCKET), 100);
        assert_eq!(bucket_count(3 << 30), 512);
        assert_eq!(bucket_count(u64::MAX), 512);
    }

    /// A damaged record is an error, not a panic.
    #[test]
    fn a_damaged_record_is_an_error() {
        let mut bytes = Vec::new();
        postcard::to_io(
            &StoredChange::new(
                "k".into(),
                Request {
                    what: Requested {
                        operation: Operation::Grant,
                        identity: "i".into(),
                        application: "a".into(),
                        entitlement: None,
                        requester: None,
                        approval: None,
                        ticket: None,
                        batch: None,
                    },
                    at: at(1),
                    place: Place {
                        file: 7,
                        line: 1,
                        sha256: [0; 32],
                    },
                },
                ChangeAcc::default(),
            ),
            &mut bytes,
        )
        .unwrap();
        let stored: StoredChange = postcard::from_bytes(&bytes).unwrap();
        // File 7 is not among the files read.
        assert!(stored.into_change(&[], at(2)).is_err());
        assert!(postcard::from_bytes::<StoredChange>(&bytes[..bytes.len() / 2]).is_err());
    }
}
