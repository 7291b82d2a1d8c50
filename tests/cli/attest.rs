//! `syncproof attest`: a signed pack that verifies, holds what it claims with
//! correct digests, is reproducible, is written atomically, guards the key
//! and the output, and whose HTML report renders in a real browser.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;
use walkdir::WalkDir;

use super::support::{
    assert_names, refusal_of, replace_in_line, repo, samples, samples_copy, sha256_hex, syncproof,
};
use super::verify::key_fixture;

const AS_OF: &str = "2026-11-20T12:00:00Z";

/// The TEST ONLY key copied to `dir` with mode 0600 (git checks it out 0644).
fn private_key(dir: &Path) -> PathBuf {
    let key = dir.join("signing.key.pem");
    fs::copy(key_fixture("test.key.pem"), &key).unwrap();
    set_mode(&key, 0o600);
    key
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// `attest COLLECTION --out PACK --key KEY --as-of AS_OF`.
fn attest(collection: &Path, pack: &Path, key: &Path) -> assert_cmd::Command {
    let mut cmd = syncproof(["attest"]);
    cmd.arg(collection)
        .arg("--out")
        .arg(pack)
        .arg("--key")
        .arg(key)
        .args(["--as-of", AS_OF]);
    cmd
}

/// Every regular file under `dir`, by `/`-separated relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            (rel, fs::read(e.path()).unwrap())
        })
        .collect()
}

/// A pack of the samples signed with the test key: (tempdir, pack path).
fn signed_pack() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path());
    let pack = dir.path().join("pack");
    attest(&samples(), &pack, &key).assert().code(0);
    (dir, pack)
}

fn entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn keygen_attest_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    syncproof(["keygen", "--out"]).arg(&keys).assert().code(0);
    let pack = dir.path().join("pack");
    attest(&samples(), &pack, &keys.join("syncproof.key.pem"))
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("FAIL: 25 finding(s)"))
        .stderr(predicate::str::contains("proves integrity, not origin").not());
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from(["keys".to_owned(), "pack".to_owned()]),
        "with --key nothing is written beside the pack"
    );
    syncproof(["verify"])
        .arg(&pack)
        .arg("--pubkey")
        .arg(keys.join("syncproof.pub.pem"))
        .arg("--collection")
        .arg(samples())
        .assert()
        .code(0)
        .stdout(
            predicate::str::starts_with("verified: ")
                .and(predicate::str::contains(format!("as of {AS_OF}"))),
        );
    // A different key does not verify it.
    syncproof(["verify"])
        .arg(&pack)
        .arg("--pubkey")
        .arg(key_fixture("test.pub.pem"))
        .assert()
        .code(1);
}

#[test]
fn pack_holds_reports_findings_and_the_applied_policies() {
    let (_d, pack) = signed_pack();
    let files = tree(&pack);
    for name in [
        "report.html",
        "report.md",
        "findings.json",
        "manifest.json",
        "manifest.sig",
    ] {
        assert!(files.contains_key(name), "{name} missing");
    }
    let findings: Value = serde_json::from_slice(&files["findings.json"]).unwrap();
    assert_eq!(findings["verdict"], "fail");
    assert_eq!(
        findings["findings"].as_array().unwrap().len(),
        26,
        "every finding stays in the pack, the excepted one too"
    );

    let shipped = tree(&repo().join("policies"));
    let copied: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("policies/")
                .map(|n| (n.to_owned(), v.clone()))
        })
        .collect();
    assert_eq!(
        copied.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &shipped {
        assert!(
            copied[name] == *bytes,
            "policies/{name} differs from the shipped file"
        );
    }
}

#[test]
fn manifest_lists_every_input_and_pack_file_with_its_digest() {
    let (_d, pack) = signed_pack();
    let manifest: Value =
        serde_json::from_slice(&fs::read(pack.join("manifest.json")).unwrap()).unwrap();

    // Inputs: every file of the collection except the README, hashed here.
    let want_inputs: BTreeMap<String, (String, u64)> = tree(&samples())
        .into_iter()
        .filter(|(k, _)| k != "README.md")
        .map(|(k, v)| (k, (sha256_hex(&v), v.len() as u64)))
        .collect();
    assert_eq!(want_inputs.len(), 12);
    let got_inputs: BTreeMap<String, (String, u64)> = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_owned(),
                (
                    i["sha256"].as_str().unwrap().to_owned(),
                    i["size"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(got_inputs, want_inputs);

    // Pack files: everything except the manifest, its signature and the DSSE
    // envelope (which sign the manifest's content).
    let want_files: BTreeMap<String, String> = tree(&pack)
        .into_iter()
        .filter(|(k, _)| {
            !["manifest.json", "manifest.sig", "attestation.dsse.json"].contains(&k.as_str())
        })
        .map(|(k, v)| (k, sha256_hex(&v)))
        .collect();
    let got_files: BTreeMap<String, String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got_files, want_files);
    assert_eq!(manifest["as_of"], AS_OF);
}

#[test]
fn two_runs_with_the_same_key_and_as_of_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    attest(&samples(), &a, &key).assert().code(0);
    attest(&samples(), &b, &key).assert().code(0);
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        assert!(tb[name] == *bytes, "{name} differs between runs");
    }
}

#[test]
fn broken_snapshots_are_all_named_and_leave_no_pack() {
    // Snapshots are read one application at a time, after the logs: a bad
    // one must still stop the run before anything is written, and every bad
    // snapshot is reported, in application order.
    let (d, c) = samples_copy();
    replace_in_line(
        &c.join("snapshots/legacy-hr/access-export-2026-10-15.csv"),
        3,
        ",true,",
        ",maybe,",
    );
    fs::write(
        c.join("snapshots/payments-db/users.json"),
        "{\"Resources\": [",
    )
    .unwrap();
    let key = private_key(d.path());
    let out_parent = d.path().join("out");
    fs::create_dir(&out_parent).unwrap();
    let pack = out_parent.join("pack");
    let stderr = refusal_of(&mut attest(&c, &pack, &key));
    assert_names(
        &stderr,
        &[
            "snapshots/legacy-hr/access-export-2026-10-15.csv",
            "line 3",
            "maybe",
            "snapshots/payments-db/users.json",
        ],
    );
    let legacy = stderr.find("legacy-hr").unwrap();
    let payments = stderr.find("payments-db/users.json").unwrap();
    assert!(legacy < payments, "{stderr}");
    assert!(
        entries(&out_parent).is_empty(),
        "{:?}",
        entries(&out_parent)
    );
    // `check` refuses it the same way.
    let check = refusal_of(syncproof(["check"]).arg(&c));
    assert_names(&check, &["access-export-2026-10-15.csv", "users.json"]);
}

#[test]
fn broken_collection_leaves_nothing_at_out_or_beside_it() {
    let (d, c) = samples_copy();
    fs::write(c.join("logs/unlisted.jsonl"), "").unwrap();
    let key = private_key(d.path());
    let out_parent = d.path().join("out");
    fs::create_dir(&out_parent).unwrap();
    let pack = out_parent.join("pack");
    attest(&c, &pack, &key)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("logs/unlisted.jsonl"));
    assert!(!pack.exists());
    assert!(
        entries(&out_parent).is_empty(),
        "{:?}",
        entries(&out_parent)
    );
    // The same without --key: no throwaway public key either.
    syncproof(["attest"])
        .arg(&c)
        .arg("--out")
        .arg(&pack)
        .assert()
        .code(2);
    assert!(
        entries(&out_parent).is_empty(),
        "{:?}",
        entries(&out_parent)
    );
}

#[test]
fn existing_out_is_refused_without_force_and_replaced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path());
    let pack = dir.path().join("pack");
    fs::create_dir(&pack).unwrap();
    fs::write(pack.join("old.txt"), "keep me").unwrap();
    attest(&samples(), &pack, &key)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force"));
    assert_eq!(entries(&pack), BTreeSet::from(["old.txt".to_owned()]));

    attest(&samples(), &pack, &key)
        .arg("--force")
        .assert()
        .code(0);
    assert!(!pack.join("old.txt").exists());
    assert!(pack.join("manifest.json").exists());
    syncproof(["verify"])
        .arg(&pack)
        .arg("--pubkey")
        .arg(key_fixture("test.pub.pem"))
        .assert()
        .code(0);
}

#[cfg(unix)]
#[test]
fn world_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = private_key(dir.path());
    set_mode(&key, 0o644);
    let pack = dir.path().join("pack");
    attest(&samples(), &pack, &key)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("0644").and(predicate::str::contains("chmod 600")));
    assert!(!pack.exists());
}

#[test]
fn without_key_the_public_key_is_written_beside_the_pack_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack");
    syncproof(["attest"])
        .arg(samples())
        .arg("--out")
        .arg(&pack)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("proves integrity, not origin"));
    let public = dir.path().join("pack.pub.pem");
    assert!(public.is_file());
    assert!(
        !tree(&pack).keys().any(|k| k.ends_with(".pem")),
        "no key inside the pack"
    );
    syncproof(["verify"])
        .arg(&pack)
        .arg("--pubkey")
        .arg(&public)
        .assert()
        .code(0);
}

#[test]
fn html_report_is_self_contained_and_shows_verdict_controls_digests() {
    let (_d, pack) = signed_pack();
    let html = fs::read_to_string(pack.join("report.html")).unwrap();
    assert!(html.contains("FAIL: 25 finding(s)"), "verdict");
    for control in [
        "PR.AA-05",
        "PR.AA-01",
        "NHI1:2025",
        "NHI5:2025",
        "AC-2(3)",
        "DE.CM-09",
    ] {
        assert!(html.contains(control), "control {control}");
    }
    for input in tree(&samples())
        .into_iter()
        .filter(|(k, _)| k != "README.md")
    {
        assert!(
            html.contains(&sha256_hex(&input.1)),
            "digest of {}",
            input.0
        );
    }
    assert!(html.contains("<svg"), "inline chart");
    assert!(html.contains("syncproof verify"), "how to verify");
    // Self-contained: no src/href to anything outside the file.
    for attr in ["src=", "href="] {
        for (i, _) in html.match_indices(attr) {
            let value = html[i + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                !value.starts_with("http:")
                    && !value.starts_with("https:")
                    && !value.starts_with("//"),
                "external reference: {}",
                &html[i..(i + 80).min(html.len())]
            );
        }
    }
    assert!(!html.contains("@import"), "no external stylesheet");
}

#[test]
fn markdown_report_has_the_same_verdict_and_controls() {
    let (_d, pack) = signed_pack();
    let md = fs::read_to_string(pack.join("report.md")).unwrap();
    let html = fs::read_to_string(pack.join("report.html")).unwrap();
    assert!(md.contains("**FAIL: 25 finding(s) at or above `low`**"));
    let controls: BTreeSet<String> =
        serde_json::from_slice::<Value>(&fs::read(pack.join("findings.json")).unwrap()).unwrap()
            ["counts"]["by_control"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    assert!(controls.len() > 10);
    for c in &controls {
        assert!(md.contains(&format!("`{c}`")), "{c} missing in report.md");
        assert!(html.contains(c.as_str()), "{c} missing in report.html");
    }
}

/// Runs `program` with `args`, killing it after `limit`; panics unless it
/// exits 0. Output goes to files named in `args`, so no pipe can fill up.
fn run_with_timeout(program: &str, args: &[&std::ffi::OsStr], limit: Duration) {
    let mut child = Process::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}); run scripts/test-deps.sh"));
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "`{program}` failed: {status}");
            return;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`{program}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn html_report_renders_in_chromium_with_verdict_and_controls() {
    let (d, pack) = signed_pack();
    let profile = d.path().join("chromium-profile");
    let pdf = d.path().join("report.pdf");
    let url = format!("file://{}", pack.join("report.html").display());
    let print = format!("--print-to-pdf={}", pdf.display());
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-pdf-header-footer",
        profile_arg.as_str(),
        print.as_str(),
        url.as_str(),
    ];
    let args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    run_with_timeout("chromium", &args, Duration::from_secs(60));
    assert!(fs::metadata(&pdf).unwrap().len() > 0);
    let txt = d.path().join("report.txt");
    run_with_timeout(
        "pdftotext",
        &[pdf.as_os_str(), txt.as_os_str()],
        Duration::from_secs(60),
    );
    let text = fs::read_to_string(&txt).unwrap();
    assert!(text.contains("FAIL: 25 finding(s)"), "{text}");
    for control in ["PR.AA-05", "NHI1:2025", "AC-2(3)"] {
        assert!(
            text.contains(control),
            "{control} not in the rendered PDF:\n{text}"
        );
    }
}
