//! `collection.yaml`, file discovery and input digests.
//!
//! A collection is a directory with `collection.yaml` at its root. Every data
//! file below it (`.json`, `.jsonl`, `.ndjson`, `.yaml`, `.yml`, `.csv`) must be
//! named by the manifest, and every file the manifest names must exist: a
//! collection that silently gained or lost a file must not look complete.
//! Other files (a `README.md`, notes) are ignored. Symbolic links are refused
//! so nothing outside the collection can be read as part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::error::{IngestError, RecordError};
use super::model::{Application, InputFile};
use super::raw::RawCollection;
use super::{digest, document};
use crate::time::{parse_timestamp, Timestamp};

/// The manifest's file name.
pub const MANIFEST: &str = "collection.yaml";

/// Extensions of files that must be accounted for by the manifest.
const DATA_EXTENSIONS: [&str; 6] = ["json", "jsonl", "ndjson", "yaml", "yml", "csv"];

/// How one application's snapshot is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SnapshotFormat {
    /// SCIM 2.0 ListResponse documents.
    Scim,
    /// A CSV export with mapped columns.
    Csv(CsvColumns),
}

/// Column names of a CSV export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CsvColumns {
    pub(crate) account: String,
    pub(crate) entitlement: String,
    pub(crate) group: Option<String>,
    pub(crate) active: Option<String>,
}

/// An application's snapshot as the manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotSpec {
    pub(crate) application: String,
    pub(crate) format: SnapshotFormat,
    pub(crate) files: Vec<String>,
    pub(crate) taken_at: Timestamp,
}

/// A validated `collection.yaml`.
#[derive(Clone, Debug)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) collected_at: Timestamp,
    pub(crate) applications: Vec<Application>,
    pub(crate) snapshots: Vec<SnapshotSpec>,
    pub(crate) sync_logs: Vec<String>,
    pub(crate) desired_state: String,
    pub(crate) exceptions: Option<String>,
}

impl Manifest {
    /// Every file the manifest names, with its kind.
    pub(crate) fn named_files(&self) -> BTreeMap<String, &'static str> {
        let mut files = BTreeMap::new();
        files.insert(MANIFEST.to_owned(), "manifest");
        for f in &self.sync_logs {
            files.insert(f.clone(), "sync_log");
        }
        files.insert(self.desired_state.clone(), "desired_state");
        for s in &self.snapshots {
            for f in &s.files {
                files.insert(f.clone(), "snapshot");
            }
        }
        if let Some(f) = &self.exceptions {
            files.insert(f.clone(), "exceptions");
        }
        files
    }
}

/// Reads and validates `collection.yaml` under `root`.
pub(crate) fn read_manifest(root: &Path) -> Result<Manifest, IngestError> {
    let path = root.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|source| IngestError::Io {
        path: path.clone(),
        source,
    })?;
    let raw: RawCollection = document::parse_yaml(MANIFEST, &text).map_err(|e| invalid(vec![e]))?;
    validate(raw)
}

fn invalid(errors: Vec<RecordError>) -> IngestError {
    IngestError::Invalid {
        file: MANIFEST.to_owned(),
        count: errors.len(),
        errors,
    }
}

/// Checks the manifest's values: version, timestamps, unique ids, tiers of
/// the right shape, safe relative paths, CSV column mappings.
fn validate(raw: RawCollection) -> Result<Manifest, IngestError> {
    let mut errors = Vec::new();
    if raw.version != 1 {
        err(
            &mut errors,
            "version".into(),
            format!("unsupported version `{}` (expected `1`)", raw.version),
        );
    }
    let collected_at = parse_timestamp(&raw.collected_at).unwrap_or_else(|e| {
        err(&mut errors, "collected_at".into(), e);
        Timestamp::default()
    });
    for (i, f) in raw.sync_logs.iter().enumerate() {
        check_path(&mut errors, format!("sync_logs[{i}]"), f);
    }
    check_path(&mut errors, "desired_state".into(), &raw.desired_state);
    if let Some(f) = &raw.exceptions {
        check_path(&mut errors, "exceptions".into(), f);
    }
    let mut seen = BTreeSet::new();
    let mut applications = Vec::new();
    let mut snapshots = Vec::new();
    for (i, app) in raw.applications.into_iter().enumerate() {
        let at = format!("applications[{i}]");
        if app.id.is_empty() {
            err(
                &mut errors,
                format!("{at}.id"),
                "application id is empty".into(),
            );
        }
        if !seen.insert(app.id.clone()) {
            err(
                &mut errors,
                format!("{at}.id"),
                format!("application `{}` is defined twice", app.id),
            );
        }
        if app.snapshot.files.is_empty() {
            err(
                &mut errors,
                format!("{at}.snapshot.files"),
                "a snapshot needs at least one file".into(),
            );
        }
        for (j, f) in app.snapshot.files.iter().enumerate() {
            check_path(&mut errors, format!("{at}.snapshot.files[{j}]"), f);
        }
        let taken_at = parse_timestamp(&app.snapshot.taken_at).unwrap_or_else(|e| {
            err(&mut errors, format!("{at}.snapshot.taken_at"), e);
            Timestamp::default()
        });
        let format = match (app.snapshot.format.as_str(), app.snapshot.columns) {
            ("scim", None) => SnapshotFormat::Scim,
            ("scim", Some(_)) => {
                err(
                    &mut errors,
                    format!("{at}.snapshot.columns"),
                    "`columns` only applies to `csv` snapshots".into(),
                );
                SnapshotFormat::Scim
            }
            ("csv", Some(c)) => SnapshotFormat::Csv(CsvColumns {
                account: c.account,
                entitlement: c.entitlement,
                group: c.group,
                active: c.active,
            }),
            ("csv", None) => {
                err(
                    &mut errors,
                    format!("{at}.snapshot.columns"),
                    "a `csv` snapshot needs `columns` naming its account and entitlement columns"
                        .into(),
                );
                SnapshotFormat::Scim
            }
            (other, _) => {
                err(
                    &mut errors,
                    format!("{at}.snapshot.format"),
                    format!("unknown snapshot format `{other}` (expected `scim` or `csv`)"),
                );
                SnapshotFormat::Scim
            }
        };
        snapshots.push(SnapshotSpec {
            application: app.id.clone(),
            format,
            files: app.snapshot.files.iter().map(|f| normalise(f)).collect(),
            taken_at,
        });
        applications.push(Application {
            name: app.name.unwrap_or_else(|| app.id.clone()),
            id: app.id,
            tier: app.tier,
            connector: app.connector,
        });
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    applications.sort_by(|a, b| a.id.cmp(&b.id));
    snapshots.sort_by(|a, b| a.application.cmp(&b.application));
    Ok(Manifest {
        name: raw.name,
        collected_at,
        applications,
        snapshots,
        sync_logs: raw.sync_logs.iter().map(|f| normalise(f)).collect(),
        desired_state: normalise(&raw.desired_state),
        exceptions: raw.exceptions.as_deref().map(normalise),
    })
}

fn err(errors: &mut Vec<RecordError>, path: String, msg: String) {
    errors.push(RecordError::at_path(MANIFEST, path, msg));
}

fn check_path(errors: &mut Vec<RecordError>, at: String, p: &str) {
    if let Err(e) = safe_relative(p) {
        err(errors, at, e);
    }
}

/// Writes a relative path with `/` separators and no `./`.
fn normalise(p: &str) -> String {
    p.trim_start_matches("./").to_owned()
}

/// Accepts only plain relative paths that stay inside the collection.
pub(crate) fn safe_relative(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("path is empty".into());
    }
    if p.contains('\\') {
        return Err(format!("`{p}` must use `/` as separator"));
    }
    for c in Path::new(p).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("`{p}` leaves the collection (`..`)")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{p}` is absolute; paths are relative to the collection"
                ))
            }
        }
    }
    Ok(())
}

/// Walks the collection and checks that named files exist and that no data
/// file is unaccounted for. Returns every named file with its kind, sorted
/// by path; [`hash_inputs`] then gives each its size and digest.
pub(crate) fn discover(
    root: &Path,
    manifest: &Manifest,
) -> Result<Vec<(String, &'static str)>, IngestError> {
    let named = manifest.named_files();
    let mut present = BTreeSet::new();
    let mut problems = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf());
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                return Err(IngestError::Io { path, source });
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let rel = relative(root, entry.path());
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if entry.file_type().is_symlink() {
            problems.push(RecordError::in_file(
                &rel,
                "is a symbolic link; a collection must hold its files itself",
            ));
            continue;
        }
        if entry.file_type().is_dir() || hidden {
            continue;
        }
        let is_data = Path::new(&rel)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| DATA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if named.contains_key(&rel) {
            present.insert(rel);
        } else if is_data {
            problems.push(
                RecordError::in_file(&rel, "is a data file that `collection.yaml` does not name")
                    .with_help("list it in `collection.yaml`, or move it out of the collection"),
            );
        }
    }
    for name in named.keys() {
        if !present.contains(name) {
            problems.push(RecordError::in_file(
                name,
                "is named in `collection.yaml` but does not exist",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(IngestError::Collection {
            root: root.to_path_buf(),
            summary: format!(
                "{} problem{} with its files",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            problems,
        });
    }
    Ok(named.into_iter().collect())
}

/// Sizes and SHA-256 digests of the `named` files. A file already hashed
/// while it was read for parsing (in `known`, by path) keeps that digest, so
/// the digest covers exactly the bytes that were parsed; any other file is
/// read and hashed here, in parallel.
pub(crate) fn hash_inputs(
    root: &Path,
    named: Vec<(String, &'static str)>,
    known: &std::collections::HashMap<String, (u64, String)>,
) -> Result<Vec<InputFile>, IngestError> {
    named
        .into_par_iter()
        .map(|(path, kind)| {
            let (size, sha256) = match known.get(&path) {
                Some(d) => d.clone(),
                None => {
                    let full = root.join(&path);
                    digest::file_sha256(&full)
                        .map_err(|source| IngestError::Io { path: full, source })?
                }
            };
            Ok(InputFile {
                path,
                size,
                sha256,
                kind: kind.to_owned(),
            })
        })
        .collect()
}

/// `path` relative to `root`, `/`-separated.
fn relative(root: &Path, path: &Path) -> String {
    let rel: PathBuf = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_safety() {
        assert!(safe_relative("logs/a.jsonl").is_ok());
        assert!(safe_relative("./logs/a.jsonl").is_ok());
        assert!(safe_relative("../a.jsonl").is_err());
        assert!(safe_relative("logs/../../a").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("logs\\a.jsonl").is_err());
        assert!(safe_relative("").is_err());
    }
}
