//! The workload generator: writes a synthetic collection of a given size,
//! with a known number of planted violations of every shipped policy, and
//! its ground truth beside it (`<DIR>.truth.json`).
//!
//! Input: [`Options`] (events, identities, applications, seed). Output: a
//! valid collection directory (see `docs/formats.md`) and the truth file.
//! It exists so that syncproof can be tested and timed on collections far
//! larger than the hand-written samples, against an answer known by
//! construction rather than by running syncproof.
//!
//! # How it works
//!
//! `world::draw` fixes the identities (about 70% people, the rest service
//! accounts, API keys, bots and workloads with a human owner), the
//! applications (10% critical, 20% high, 40% medium, 30% low; every tenth a
//! CSV export), who has an account where, which connectors go silent or
//! fail, which snapshots are stale, and which application hosts which
//! planted violation. Then each application is generated on its own
//! (`app::AppBuilder`) and written at once: its snapshot, its assignments
//! (appended to the desired state) and its sync-log lines (appended to the
//! day files). Only one application's records are ever in memory.
//!
//! # How `--events` is split
//!
//! Each application gets an equal share of the events still to write. The
//! planted changes come first; compliant changes (grants, updates, revokes,
//! account creations, account removals of leavers: about 3–4 lines each,
//! with retries, re-deliveries and replays) fill the share up to about three
//! quarters, and heartbeats (plus a few connector errors) fill the rest,
//! capped by the number of heartbeat slots the tier's interval leaves in the
//! four-day log span. The shares are recomputed after every application, so
//! the total lands on `--events` unless the sizes make that impossible (a
//! tiny `--events` with many applications, which still get their planted
//! cases and one heartbeat each). Replayed lines count as events.
//!
//! Determinism: a ChaCha8 stream per application from `--seed`, `BTreeMap`s
//! and sorted vectors only, and a fixed `collected_at` (2026-11-20T12:00:00Z).

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One application's slice of the workload.
mod app;
/// Writing the collection's files.
mod emit;
/// The ground-truth file.
pub mod truth;
/// Identities, applications and plant placement.
mod world;

use truth::{ChangeCounts, DriftCounts, LogCounts, Truth};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Sync-log lines to write (replays and re-deliveries included).
    pub events: u64,
    /// Identities in the desired state.
    pub identities: u32,
    /// Applications (one connector each).
    pub applications: u32,
    /// Seed of every random choice.
    pub seed: u64,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The truth file.
    pub truth_path: PathBuf,
    /// The truth it holds.
    pub truth: Truth,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GenerateError {
    /// A size argument is zero.
    #[error("`--{name}` must be at least 1")]
    TooSmall {
        /// The argument.
        name: &'static str,
    },
    /// The output directory holds something already.
    #[error("`{}` already exists and is not empty; refusing to overwrite it", path.display())]
    #[diagnostic(help("choose a new `--out` directory, or remove this one first"))]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// The truth file exists already.
    #[error("`{}` already exists; refusing to overwrite it", path.display())]
    #[diagnostic(help("remove it, or choose another `--out` directory"))]
    TruthExists {
        /// The truth file.
        path: PathBuf,
    },
    /// The output path has no final name to derive the truth file from.
    #[error("`{}` cannot be a collection directory: it has no name", path.display())]
    NoName {
        /// The path.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record could not be serialised.
    #[error("cannot serialise {what}: {message}")]
    Serialize {
        /// What.
        what: String,
        /// Why.
        message: String,
    },
}

/// The truth file of collection directory `out`: `<out>.truth.json` beside it.
pub fn truth_path(out: &Path) -> Result<PathBuf, GenerateError> {
    let name = out.file_name().ok_or_else(|| GenerateError::NoName {
        path: out.to_owned(),
    })?;
    let mut file = name.to_os_string();
    file.push(".truth.json");
    Ok(out.with_file_name(file))
}

/// Checks the options and that nothing would be overwritten.
fn preflight(out: &Path, options: &Options) -> Result<PathBuf, GenerateError> {
    if options.events == 0 {
        return Err(GenerateError::TooSmall { name: "events" });
    }
    if options.identities == 0 {
        return Err(GenerateError::TooSmall { name: "identities" });
    }
    if options.applications == 0 {
        return Err(GenerateError::TooSmall {
            name: "applications",
        });
    }
    let truth = truth_path(out)?;
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(GenerateError::NotEmpty {
                path: out.to_owned(),
            });
        }
    }
    if truth.exists() {
        return Err(GenerateError::TruthExists { path: truth });
    }
    Ok(truth)
}

/// Writes a synthetic collection into `out` (which must not exist or be
/// empty) and its truth beside it.
pub fn generate(out: &Path, options: &Options) -> Result<Summary, GenerateError> {
    let truth_file = preflight(out, options)?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let world = world::draw(options.identities, options.applications, &mut rng);
    for dir in ["desired", "logs", "snapshots"] {
        emit::mkdir(&out.join(dir))?;
    }
    emit::manifest(out, &world, options.seed, options.events)?;
    let mut desired = emit::desired_start(out, &world)?;
    let mut logs = emit::Logs::create(out, &world)?;

    let mut written: u64 = 0;
    let mut workflow_seq: u64 = 0;
    let mut findings = Vec::new();
    let mut drift = DriftCounts::default();
    let mut changes = ChangeCounts::default();
    let mut log = LogCounts {
        requested: options.events,
        ..LogCounts::default()
    };
    let n_apps = world.apps.len();
    for a in 0..n_apps {
        let mut app_rng = ChaCha8Rng::seed_from_u64(options.seed);
        app_rng.set_stream(a as u64 + 1);
        let mut b = app::AppBuilder::new(&world, a, app_rng);
        let share = options.events.saturating_sub(written) / (n_apps - a) as u64;
        let (_, _, slots) = b.heartbeat_slots();
        let reserve = (share / 4).clamp(1, slots);
        b.plant_all(&mut workflow_seq)?;
        b.fill_changes(share.saturating_sub(reserve), &mut workflow_seq)?;
        b.connector_events(share)?;
        written += b.lines;
        let slice = b.finish();
        emit::snapshot(out, &world, a, &slice)?;
        emit::assignments(&mut desired, &world, a, &slice)?;
        logs.write(&slice)?;
        findings.extend(slice.findings);
        drift.add(&slice.drift);
        changes.add(&slice.changes);
        log.replays += slice.replays;
        log.redeliveries += slice.redeliveries;
    }
    desired.finish()?;
    logs.finish()?;

    let truth = Truth::new(options.seed, written, findings, drift, changes, log);
    let mut text = serde_json::to_string_pretty(&truth).map_err(|e| GenerateError::Serialize {
        what: "the truth".into(),
        message: e.to_string(),
    })?;
    text.push('\n');
    let mut f = emit::Out::create(truth_file.clone())?;
    f.write(text.as_bytes())?;
    f.finish()?;
    Ok(Summary {
        truth_path: truth_file,
        truth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: u64, identities: u32, applications: u32) -> (tempfile::TempDir, Summary) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("c");
        let s = generate(
            &out,
            &Options {
                events,
                identities,
                applications,
                seed: 3,
            },
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn tiny_sizes_never_panic() {
        for (e, i, a) in [(1, 1, 1), (5, 1, 2), (1, 2, 1), (50, 3, 3), (1, 1, 20)] {
            let (dir, s) = run(e, i, a);
            assert!(dir.path().join("c/collection.yaml").is_file());
            assert!(s.truth.events >= 1, "{e} {i} {a}");
        }
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "x").unwrap();
        let o = Options {
            events: 10,
            identities: 2,
            applications: 1,
            seed: 1,
        };
        assert!(matches!(
            generate(dir.path(), &o),
            Err(GenerateError::NotEmpty { .. })
        ));
    }

    #[test]
    fn truth_sits_beside_the_directory() {
        let p = truth_path(Path::new("/tmp/w1")).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/w1.truth.json"));
        let p = truth_path(Path::new("/tmp/w1/")).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/w1.truth.json"));
    }
}
