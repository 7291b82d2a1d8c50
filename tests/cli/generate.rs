//! `syncproof generate`: the workload is a valid collection whose
//! reconciliation matches the ground truth written beside it, it is
//! byte-for-byte reproducible, and it never overwrites anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

/// The binary under test.
fn syncproof() -> Command {
    Command::cargo_bin("syncproof").unwrap()
}

/// Generates the small test workload into `<tmp>/<name>`.
fn generate(tmp: &Path, name: &str, seed: u64) -> PathBuf {
    let out = tmp.join(name);
    syncproof()
        .args(["generate", "--out"])
        .arg(&out)
        .args([
            "--events",
            "3000",
            "--identities",
            "300",
            "--applications",
            "12",
        ])
        .args(["--seed", &seed.to_string()])
        .assert()
        .success()
        .stdout(contains("3000 events"));
    out
}

/// The parsed truth file of collection `out`.
fn truth(out: &Path) -> Value {
    let mut name = out.file_name().unwrap().to_os_string();
    name.push(".truth.json");
    let text = std::fs::read_to_string(out.with_file_name(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// How many items of `list` have each value of `field`.
fn count_by(list: &Value, field: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for item in list.as_array().unwrap() {
        *counts
            .entry(item[field].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// Every file under `root`, relative path → bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn small_workload_reconciles_to_its_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let out = generate(tmp.path(), "w", 7);
    let truth = truth(&out);
    assert!(
        !out.join("w.truth.json").exists(),
        "the truth is beside the collection"
    );
    let output = syncproof()
        .arg("reconcile")
        .arg(&out)
        .args(["--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let r: Value = serde_json::from_slice(&output).unwrap();

    let drift = count_by(&r["drift"], "class");
    for (class, n) in truth["drift"].as_object().unwrap() {
        assert_eq!(
            drift.get(class).copied().unwrap_or(0),
            n.as_u64().unwrap(),
            "drift class {class}"
        );
    }
    assert_eq!(
        drift.values().sum::<u64>(),
        r["drift"].as_array().unwrap().len() as u64
    );
    let changes = count_by(&r["changes"], "status");
    for (status, n) in truth["changes"].as_object().unwrap() {
        assert_eq!(
            changes.get(status).copied().unwrap_or(0),
            n.as_u64().unwrap(),
            "changes {status}"
        );
    }

    let events = &r["events"];
    assert_eq!(events["read"], truth["events"]);
    assert_eq!(events["after_as_of"], 0);
    assert!(events["replays"].as_u64().unwrap() > 0);
    assert!(events["redeliveries"].as_u64().unwrap() > 0);
    assert_eq!(events["replays"], truth["log"]["replays"]);
    assert_eq!(events["redeliveries"], truth["log"]["redeliveries"]);

    // Every shipped policy has at least one planted finding.
    for (policy, n) in truth["counts"].as_object().unwrap() {
        assert!(n.as_u64().unwrap() >= 1, "nothing planted for `{policy}`");
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = generate(tmp.path(), "a", 11);
    let b = generate(tmp.path(), "b", 11);
    let c = generate(tmp.path(), "c", 12);
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(
        fa.keys().collect::<BTreeSet<_>>(),
        fb.keys().collect::<BTreeSet<_>>()
    );
    for (path, bytes) in &fa {
        assert!(bytes == &fb[path], "`{path}` differs between two runs");
    }
    assert_eq!(
        std::fs::read(tmp.path().join("a.truth.json")).unwrap(),
        std::fs::read(tmp.path().join("b.truth.json")).unwrap()
    );
    assert_ne!(fa, fc, "a different seed gives a different collection");
}

#[test]
fn bad_arguments_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    // Plain errors: the human renderer wraps long temporary paths.
    syncproof()
        .args(["--error-format", "plain", "generate", "--out"])
        .arg(tmp.path().join("zero"))
        .args(["--events", "0"])
        .assert()
        .code(2)
        .stderr(contains("`--events` must be at least 1"));
    assert!(!tmp.path().join("zero").exists());

    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    syncproof()
        .args(["--error-format", "plain", "generate", "--out"])
        .arg(&full)
        .args(["--events", "100"])
        .assert()
        .code(2)
        .stderr(contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read_to_string(full.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn check_finds_exactly_the_planted_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let out = generate(tmp.path(), "w", 7);
    let truth = truth(&out);
    let output = syncproof()
        .arg("check")
        .arg(&out)
        .args(["--format", "json", "--fail-on", "low"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: Value = serde_json::from_slice(&output).unwrap();
    let found: BTreeSet<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["policy_id"].as_str().unwrap().to_owned(),
                f["subject"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = truth["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["policy_id"].as_str().unwrap().to_owned(),
                f["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nunexpected: {extra:#?}"
    );
}

/// Parallel evaluation (rayon over partitions, logs read beside the desired
/// state) gives the same bytes as one thread, for every output format.
#[test]
fn parallel_output_equals_single_threaded_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = generate(tmp.path(), "w", 11);
    for format in ["json", "sarif", "junit", "oscal", "text"] {
        let run = |threads: &str| {
            syncproof()
                .env("RAYON_NUM_THREADS", threads)
                .arg("check")
                .arg(&out)
                .args(["--format", format])
                .assert()
                .code(1)
                .get_output()
                .stdout
                .clone()
        };
        let one = run("1");
        assert!(!one.is_empty());
        assert_eq!(one, run("2"), "{format}: 1 thread vs 2");
        assert_eq!(one, run("4"), "{format}: 1 thread vs 4");
    }
}

/// A JSON desired state holds one document: text after it is refused with
/// its file, line and column, and `attest` writes nothing.
#[test]
fn text_after_a_json_desired_state_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = generate(tmp.path(), "w", 5);
    let path = out.join("desired/governance.json");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let lines = text.lines().count();
    text.push_str("{\"identities\": []}\n");
    std::fs::write(&path, text).unwrap();
    let pack = tmp.path().join("pack");
    let assert = syncproof()
        .arg("attest")
        .arg(&out)
        .arg("--out")
        .arg(&pack)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(err.contains("desired/governance.json"), "{err}");
    assert!(err.contains("trailing characters"), "{err}");
    assert!(
        err.contains(&format!("governance.json:{}:", lines + 1)),
        "{err}"
    );
    assert!(!pack.exists(), "a refused collection left a pack behind");
}

/// A JSON desired state that breaks in the middle is refused with the
/// line and column where it breaks, and `check` reports nothing else.
#[test]
fn a_json_desired_state_broken_in_the_middle_is_named_where_it_breaks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = generate(tmp.path(), "w", 6);
    let path = out.join("desired/governance.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("\"assignments\""))
        .unwrap();
    // Drop the comma after the tenth assignment.
    let broken = start + 10;
    let fixed = lines[broken].strip_suffix(',').unwrap().to_owned();
    lines[broken] = &fixed;
    std::fs::write(&path, lines.join("\n")).unwrap();
    let assert = syncproof().arg("check").arg(&out).assert().code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(err.contains("expected `,` or `]`"), "{err}");
    assert!(
        err.contains(&format!("desired/governance.json:{}:", broken + 2)),
        "{err}"
    );
    assert!(err.contains("assignments"), "{err}");
}
