//! Ingest: a collection directory becomes validated, typed records.
//!
//! [`load`] reads `collection.yaml`, checks that the files on disk are exactly
//! the files it names, hashes every input, and parses the desired state and
//! every snapshot. Sync logs can be large, so they are not loaded here:
//! [`Collection::read_events`] streams them, one event at a time, to whoever
//! reconciles them. `load_deferred` parses the desired state while the logs
//! stream, and leaves the snapshots to be read one application at a time.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub mod assignments;
pub mod collection;
mod csv_export;
mod desired;
pub mod digest;
mod document;
pub mod error;
mod json_split;
pub mod model;
pub(crate) mod raw;
mod scim;
pub mod synclog;

pub use error::IngestError;
use error::Problems;
use model::{Application, Event, Identity, InputFile, Snapshot};
pub use synclog::Rejected;

use crate::time::Timestamp;

/// A loaded collection: everything but the sync-log events.
#[derive(Debug)]
pub struct Collection {
    /// The collection directory.
    pub root: PathBuf,
    /// The assessment name.
    pub name: String,
    /// When the collection was made (the default `--as-of`).
    pub collected_at: Timestamp,
    /// Applications, sorted by id.
    pub applications: Vec<Application>,
    /// Identities, sorted by id.
    pub identities: Vec<Identity>,
    /// Approved assignments, by application.
    pub assignments: assignments::DesiredAssignments,
    /// One snapshot per application, sorted by application.
    pub snapshots: Vec<Snapshot>,
    /// Sync-log files, as named in the manifest.
    pub sync_logs: Vec<String>,
    /// The exceptions file, if the manifest names one.
    pub exceptions: Option<String>,
    /// Every input file with its size and SHA-256, sorted by path.
    pub inputs: Vec<InputFile>,
}

/// Loads the collection at `root`.
pub fn load(root: &Path) -> Result<Collection, IngestError> {
    let manifest = collection::read_manifest(root)?;
    let named = collection::discover(root, &manifest)?;
    let (mut collection, known, _) = load_records(root, manifest, false)?;
    // The logs are not read here: hashed from disk (in parallel).
    collection.inputs = collection::hash_inputs(root, named, &known)?;
    Ok(collection)
}

/// Sizes and digests of the files hashed while they were read, by path.
pub(crate) type Known = HashMap<String, (u64, String)>;

/// What the sync-log reader needs to know before the collection is loaded.
pub struct Preamble<'a> {
    /// The applications from `collection.yaml`.
    pub applications: &'a [Application],
    /// `collected_at` from `collection.yaml`.
    pub collected_at: Timestamp,
    /// The sync logs' total size on disk (files that cannot be read count as
    /// empty here; reading them reports the error).
    pub log_bytes: u64,
}

/// A collection whose snapshots have not been read yet: they are read one
/// application at a time with [`Deferred::read_snapshot`], so no more than a
/// few are in memory at once.
pub(crate) struct Deferred {
    /// The collection, with no snapshots and no `inputs` yet.
    pub(crate) collection: Collection,
    /// The snapshots to read, sorted by application.
    pub(crate) specs: Vec<collection::SnapshotSpec>,
    named: Vec<(String, &'static str)>,
    known: Known,
}

impl Deferred {
    /// Reads one snapshot (see [`read_snapshot`]).
    pub(crate) fn read_snapshot(
        &self,
        spec: &collection::SnapshotSpec,
    ) -> Result<(SnapshotOutcome, Known), IngestError> {
        read_snapshot(&self.collection.root, spec)
    }

    /// Records the sizes and digests of files read (the snapshots).
    pub(crate) fn extend_known(&mut self, digests: Known) {
        self.known.extend(digests);
    }

    /// Every input file with its size and SHA-256: those read already keep
    /// the digest of the bytes parsed, the others are hashed from disk.
    pub(crate) fn inputs(&mut self) -> Result<Vec<InputFile>, IngestError> {
        collection::hash_inputs(
            &self.collection.root,
            std::mem::take(&mut self.named),
            &self.known,
        )
    }
}

/// Loads the collection at `root` and, at the same time on another core,
/// streams its sync-log events into the sink that `make_sink` builds from the
/// manifest. The snapshots are left to be read later, one application at a
/// time ([`Deferred::read_snapshot`]). What the logs and the desired state
/// hold is what [`load`] followed by [`Collection::read_events`] gives.
pub(crate) fn load_deferred<S, M, P>(
    root: &Path,
    quarantine: bool,
    make_sink: M,
    push: P,
) -> Result<(Deferred, S, Vec<Rejected>), IngestError>
where
    S: Send,
    M: FnOnce(&Preamble<'_>) -> S,
    P: Fn(&mut S, Event) + Sync,
{
    let manifest = collection::read_manifest(root)?;
    let named = collection::discover(root, &manifest)?;
    let log_bytes = manifest
        .sync_logs
        .iter()
        .filter_map(|f| std::fs::metadata(root.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let mut sink = make_sink(&Preamble {
        applications: &manifest.applications,
        collected_at: manifest.collected_at,
        log_bytes,
    });
    let logs = manifest.sync_logs.clone();
    let applications = manifest.applications.clone();
    let (loaded, events) = rayon::join(
        || load_records(root, manifest, true),
        || {
            let r = read_logs(root, &logs, &applications, quarantine, &mut |e| {
                push(&mut sink, e)
            });
            r.map(|(rejected, digests)| (sink, rejected, digests))
        },
    );
    // Input errors of the records come first, as `load` would report them.
    let (collection, mut known, specs) = loaded?;
    let (sink, rejected, log_digests) = events?;
    known.extend(log_digests);
    Ok((
        Deferred {
            collection,
            specs,
            named,
            known,
        },
        sink,
        rejected,
    ))
}

/// One snapshot, or the problems of its files.
pub(crate) type SnapshotOutcome = Result<Snapshot, Vec<(String, Problems)>>;

/// Parses the desired state and the snapshots. The returned collection has no
/// `inputs` yet; the files read are returned with their digests.
fn load_records(
    root: &Path,
    mut manifest: collection::Manifest,
    defer_snapshots: bool,
) -> Result<(Collection, Known, Vec<collection::SnapshotSpec>), IngestError> {
    let app_ids: BTreeSet<String> = manifest.applications.iter().map(|a| a.id.clone()).collect();
    let mut errors = Vec::new();
    let mut known = Known::new();

    let (parsed, digest) = read_desired(root, &manifest.desired_state, &app_ids)?;
    known.insert(manifest.desired_state.clone(), digest);
    let desired = match parsed {
        Ok(d) => d,
        Err(p) => {
            push_problems(&mut errors, &manifest.desired_state, p);
            desired::Desired::default()
        }
    };
    if defer_snapshots {
        error::combine(errors)?;
        let specs = std::mem::take(&mut manifest.snapshots);
        return Ok((
            collection_of(root, manifest, desired, Vec::new()),
            known,
            specs,
        ));
    }
    // Snapshots are independent of each other: read them in parallel, keep
    // them (and their errors) in manifest order.
    let parsed: Vec<Result<(SnapshotOutcome, Known), IngestError>> = manifest
        .snapshots
        .par_iter()
        .with_max_len(1)
        .map(|spec| read_snapshot(root, spec))
        .collect();
    let mut snapshots = Vec::new();
    for p in parsed {
        let (outcome, digests) = p?;
        known.extend(digests);
        match outcome {
            Ok(s) => snapshots.push(s),
            Err(failures) => snapshot_problems(&mut errors, failures),
        }
    }
    error::combine(errors)?;
    Ok((
        collection_of(root, manifest, desired, snapshots),
        known,
        Vec::new(),
    ))
}

fn collection_of(
    root: &Path,
    manifest: collection::Manifest,
    desired: desired::Desired,
    snapshots: Vec<Snapshot>,
) -> Collection {
    Collection {
        root: root.to_path_buf(),
        name: manifest.name,
        collected_at: manifest.collected_at,
        applications: manifest.applications,
        identities: desired.identities,
        assignments: desired.assignments,
        snapshots,
        sync_logs: manifest.sync_logs,
        exceptions: manifest.exceptions,
        inputs: Vec::new(),
    }
}

/// The desired state, or the problems of its file.
type DesiredOutcome = Result<desired::Desired, Problems>;

/// Reads and parses the desired state, with the file's size and SHA-256.
/// JSON is read in pieces, its text never held whole (a governance export
/// can be gigabytes); one that does not parse is read again as a stream, to
/// say where. YAML is read whole.
fn read_desired(
    root: &Path,
    rel: &str,
    applications: &BTreeSet<String>,
) -> Result<(DesiredOutcome, (u64, String)), IngestError> {
    if !rel.ends_with(".json") {
        let (text, digest) = read_text(root, rel)?;
        return Ok((desired::parse(rel, &text, applications), digest));
    }
    let path = root.join(rel);
    let io = |source| IngestError::Io {
        path: path.clone(),
        source,
    };
    let open = || std::fs::File::open(&path).map(|f| std::io::BufReader::with_capacity(1 << 16, f));
    // Each read hashes what it reads, from the start of the file.
    let hashed = || std::fs::File::open(&path).map(digest::HashingReader::new);
    let mut hashing = hashed().map_err(io)?;
    let parsed = match desired::parse_json_pieces(rel, &mut hashing, applications) {
        Some(parsed) => parsed,
        // It did not parse: read it again, more slowly, to say where.
        None => {
            hashing = hashed().map_err(io)?;
            desired::parse_json_stream(
                rel,
                std::io::BufReader::with_capacity(1 << 16, &mut hashing),
                open,
                applications,
            )
        }
    };
    // The digest covers the whole file, read to its end.
    let digest = hashing.finish().map_err(io)?;
    Ok((parsed, digest))
}

/// Reads and parses one application's snapshot; returns it (or the problems
/// of its files) with the size and digest of every file read.
pub(crate) fn read_snapshot(
    root: &Path,
    spec: &collection::SnapshotSpec,
) -> Result<(SnapshotOutcome, Known), IngestError> {
    let mut files = Vec::new();
    let mut digests = Known::new();
    for f in &spec.files {
        let (text, digest) = read_text(root, f)?;
        digests.insert(f.clone(), digest);
        files.push((f.clone(), text));
    }
    let parsed = match &spec.format {
        collection::SnapshotFormat::Scim => scim::parse(&files).map(|s| (s.accounts, s.groups)),
        collection::SnapshotFormat::Csv(cols) => {
            csv_export::parse(&files, cols).map(|s| (s.accounts, s.groups))
        }
    };
    let outcome = parsed.map(|(accounts, groups)| Snapshot {
        application: spec.application.clone(),
        taken_at: spec.taken_at,
        format: match spec.format {
            collection::SnapshotFormat::Scim => "scim".to_owned(),
            collection::SnapshotFormat::Csv(_) => "csv".to_owned(),
        },
        files: spec.files.clone(),
        accounts,
        groups,
    });
    Ok((outcome, digests))
}

/// Adds the problems of a snapshot's files to `errors`.
pub(crate) fn snapshot_problems(errors: &mut Vec<IngestError>, failures: Vec<(String, Problems)>) {
    for (file, p) in failures {
        push_problems(errors, &file, p);
    }
}

fn push_problems(errors: &mut Vec<IngestError>, file: &str, p: Problems) {
    if let Err(e) = p.into_result(file) {
        errors.push(e);
    }
}

/// Reads a whole file as UTF-8, with its size and SHA-256 (of the bytes
/// read, so the digest covers exactly what is parsed).
fn read_text(root: &Path, rel: &str) -> Result<(String, (u64, String)), IngestError> {
    let path = root.join(rel);
    let bytes = std::fs::read(&path).map_err(|source| IngestError::Io {
        path: path.clone(),
        source,
    })?;
    let digest = (bytes.len() as u64, digest::sha256_hex(&bytes));
    let text = String::from_utf8(bytes).map_err(|e| IngestError::Invalid {
        file: rel.to_owned(),
        count: 1,
        errors: vec![error::RecordError::in_file(
            rel,
            format!(
                "is not valid UTF-8 (byte {})",
                e.utf8_error().valid_up_to() + 1
            ),
        )],
    })?;
    Ok((text, digest))
}

impl Collection {
    /// Streams every sync-log event to `sink`, file by file in manifest order,
    /// line by line. Bad lines of all files are reported together; with
    /// `quarantine`, they are returned instead.
    pub fn read_events(
        &self,
        quarantine: bool,
        sink: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Vec<Rejected>, IngestError> {
        read_logs(
            &self.root,
            &self.sync_logs,
            &self.applications,
            quarantine,
            sink,
        )
        .map(|(rejected, _digests)| rejected)
    }
}

/// Streams every event of `logs` (in order) to `sink`; returns the rejected
/// lines and each log's size and digest.
fn read_logs(
    root: &Path,
    logs: &[String],
    applications: &[Application],
    quarantine: bool,
    sink: &mut (dyn FnMut(Event) + Send),
) -> Result<(Vec<Rejected>, Known), IngestError> {
    let app_ids: BTreeSet<String> = applications.iter().map(|a| a.id.clone()).collect();
    let connectors: BTreeSet<String> = applications.iter().map(|a| a.connector.clone()).collect();
    let ctx = synclog::LogContext {
        applications: &app_ids,
        connectors: &connectors,
    };
    let mut rejected = Vec::new();
    let mut digests = Known::new();
    let mut errors = Vec::new();
    for file in logs {
        match synclog::read(file, &root.join(file), &ctx, quarantine, sink) {
            Ok((r, digest)) => {
                rejected.extend(r);
                digests.insert(file.clone(), digest);
            }
            Err(e @ IngestError::Invalid { .. }) => errors.push(e),
            Err(e) => return Err(e),
        }
    }
    error::combine(errors)?;
    Ok((rejected, digests))
}

/// Parses a YAML document as `T`, with errors naming the file, the line and
/// the path inside the document. Used for the policy pack's YAML files too.
pub fn parse_yaml_document<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, error::RecordError> {
    document::parse_yaml(file, text)
}

/// The 1-based line of each item of the top-level block sequence `key:` in a
/// block-style YAML document (empty when the layout is not block style).
pub fn yaml_item_lines(text: &str, key: &str) -> Vec<u64> {
    document::item_lines(text, key)
}
