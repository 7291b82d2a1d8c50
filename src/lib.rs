//! syncproof turns identity-connector sync logs and application snapshots into
//! policy-checked, signed audit evidence.
//!
//! The governing principle, enforced everywhere: **a change that is not confirmed
//! in the target system has not happened.** An unconfirmed revocation means the
//! access still exists (fail closed).
//!
//! # Pipeline
//!
//! ```text
//!  collection/            ingest::load          reconcile::run         policy::evaluate        evidence::*
//!  collection.yaml  ───▶  typed records,  ───▶  change lifecycles, ───▶ Cedar decisions  ───▶  report model, templates,
//!  sync logs (JSONL)      each with a           effective access,      -> findings with        SARIF / JUnit / OSCAL,
//!  desired state          SourceRef             drift, health,         controls                manifest, DSSE + raw
//!  SCIM / CSV snapshots                         freshness                                      Ed25519 signatures
//! ```
//!
//! Every stage is a pure function of its inputs and of `--as-of`: nothing reads
//! the wall clock, iterates a hash map into output, or depends on thread order.
//!
//! `check` and `attest` run the middle two stages fused, one application at a
//! time: [`reconcile::prepare`] reads the desired state (its assignments
//! packed and bucketed by application in temporary files as they are read,
//! see [`ingest::assignments`]) and
//! folds the sync logs (their change events bucketed by idempotency key in
//! temporary files, each bucket folded on its own, and the changes stored
//! on disk by application), then [`policy::reconcile_and_evaluate`] reads
//! each application's snapshot, assignments and changes, reconciles them
//! and decides its subjects at once, keeping only findings, counts and
//! drift (and, for `attest`'s JUnit report, the ids of the subjects decided,
//! in a temporary file: [`policy::subjects`]). `reconcile` keeps everything
//! ([`reconcile::load_and_run`]); both give the same facts and findings.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | clean: no finding at or above `--fail-on`; a pack verified |
//! | 1 | the thing checked is bad: findings at or above the threshold; verification failed |
//! | 2 | trouble: usage error, unreadable or invalid input, I/O error |

pub mod cli;
pub mod evidence;
pub mod generate;
pub mod ingest;
pub mod policy;
pub mod reconcile;
pub(crate) mod spool;
pub mod strings;
pub mod time;

/// A hash map for hot lookups of in-memory keys: foldhash (the hasher
/// hashbrown uses by default), seeded per process. Never iterated into an
/// output: everything derived from one is sorted by a total order.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with the hasher of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
