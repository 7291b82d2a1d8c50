//! The machine formats, checked by the tools that consume them: SARIF 2.1.0
//! and OSCAL 1.1.3 against the official JSON schemas
//! (`tests/fixtures/schemas/`, validated by `tests/external/validate_schema.py`),
//! JUnit XML by the `junitparser` package, OSCAL by `compliance-trestle`'s
//! object model.
//!
//! These tests need `python3` and the packages in `tests/requirements.txt`.
//! They fail, never skip, when one is missing: CI installs them
//! (`scripts/test-deps.sh`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use serde_json::Value;

use syncproof::evidence::assessment::Assessment;
use syncproof::evidence::formats::{machine_files, FormatError};
use syncproof::evidence::{junit, oscal, sarif};
use syncproof::policy::findings::AppliedException;
use syncproof::policy::{CompiledPack, EvaluateOptions, Evaluation, PolicyPack, Severity};
use syncproof::reconcile::Reconciled;

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a script in `tests/external/`.
fn script(name: &str) -> PathBuf {
    root().join("tests/external").join(name)
}

/// Path of an official schema.
fn schema(name: &str) -> PathBuf {
    root().join("tests/fixtures/schemas").join(name)
}

/// Runs `python3 SCRIPT ARGS...`, failing (not skipping) when it cannot start.
fn python(script_name: &str, args: &[&Path]) -> std::process::Output {
    StdCommand::new("python3")
        .arg(script(script_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 (CI must install it and tests/requirements.txt): {e}")
        })
}

/// Runs a checker script and asserts it succeeded; returns its stdout.
fn check_with(script_name: &str, args: &[&Path]) -> String {
    let out = python(script_name, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script_name} failed (are tests/requirements.txt installed?):\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `syncproof check samples --format FORMAT [EXTRA...]` from the repository
/// root; returns stdout, asserting exit 1 (the samples fail the gate, and the
/// report is written anyway).
fn check(format: &str, extra: &[&str]) -> Vec<u8> {
    let out = Command::cargo_bin("syncproof")
        .unwrap()
        .current_dir(root())
        .args(["check", "samples", "--format", format])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
    out.stdout
}

/// Writes bytes to a file in `dir` and returns its path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// The samples evaluated through the library, subjects kept.
struct Evaluated {
    /// The pack.
    pack: CompiledPack,
    /// The reconciled state.
    reconciled: Reconciled,
    /// The evaluation.
    eval: Evaluation,
}

impl Evaluated {
    /// Evaluates the samples.
    fn samples(keep_subjects: bool) -> Self {
        let pack = PolicyPack::builtin().compile().unwrap();
        let collection = syncproof::ingest::load(&root().join("samples")).unwrap();
        let reconciled = syncproof::reconcile::run(
            collection,
            &syncproof::reconcile::Options {
                as_of: None,
                quarantine: false,
            },
        )
        .unwrap();
        let eval = syncproof::policy::evaluate(
            &reconciled,
            &pack,
            EvaluateOptions {
                keep_subjects,
                ..Default::default()
            },
        )
        .unwrap();
        Evaluated {
            pack,
            reconciled,
            eval,
        }
    }

    /// Marks the finding of `policy` about `subject` as excepted.
    fn except(&mut self, policy: &str, subject: &str) {
        let f = self
            .eval
            .findings
            .iter_mut()
            .find(|f| f.policy_id == policy && f.subject.id == subject)
            .unwrap_or_else(|| panic!("no finding {policy} {subject}"));
        f.exception = Some(AppliedException {
            id: "EXC-TEST-1".into(),
            justification: "Break-glass <admin> & \"vaulted\"".into(),
            approver: "ciso@example.com".into(),
            ticket: Some("RISK-1".into()),
            granted_at: "2026-10-01T00:00:00Z".into(),
            expires_at: "2026-12-31T23:59:59Z".into(),
        });
    }

    /// The assessment at `--fail-on low`.
    fn assessment(&self) -> Assessment {
        Assessment::new(
            &self.reconciled,
            &self.pack,
            &self.eval,
            Vec::new(),
            Severity::Low,
        )
    }
}

/// The breakglass finding the samples' live exception is written for.
const BREAKGLASS: (&str, &str) = (
    "unauthorized-access",
    "grant:crm-saas/breakglass-admin/crm:admin",
);

/// The samples with the breakglass finding excepted.
fn excepted_samples() -> Evaluated {
    let mut e = Evaluated::samples(true);
    e.except(BREAKGLASS.0, BREAKGLASS.1);
    e
}

/// `check --format json` of the samples.
fn json_assessment() -> Value {
    serde_json::from_slice(&check("json", &[])).unwrap()
}

// --- SARIF -----------------------------------------------------------------

#[test]
fn sarif_from_check_validates_against_the_official_schema() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = check("sarif", &[]);
    let path = write(dir.path(), "findings.sarif", &bytes);
    check_with(
        "validate_schema.py",
        &[&schema("sarif-schema-2.1.0.json"), &path],
    );

    let log: Value = serde_json::from_slice(&bytes).unwrap();
    let a = json_assessment();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let policy_ids: Vec<&str> = a["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let rule_ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(rule_ids, policy_ids);
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), a["findings"].as_array().unwrap().len());
    for r in results {
        let id = r["ruleId"].as_str().unwrap();
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rule_ids[index], id);
        let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(uri.starts_with("samples/"), "{uri}");
        assert!(root().join(uri).is_file(), "{uri} is not a file");
        let severity = rules[index]["properties"]["security-severity"]
            .as_str()
            .unwrap();
        assert!(["9.5", "8.0", "5.5", "3.0"].contains(&severity));
    }
    let not_revoked = rules.iter().find(|r| r["id"] == "not-revoked").unwrap();
    assert_eq!(not_revoked["name"], "NotRevoked");
    assert_eq!(not_revoked["defaultConfiguration"]["level"], "error");
    assert_eq!(not_revoked["properties"]["security-severity"], "9.5");
}

#[test]
fn sarif_fingerprints_are_stable_across_runs_and_distinct_across_findings() {
    let fingerprints = |bytes: &[u8]| -> Vec<(String, String)> {
        let log: Value = serde_json::from_slice(bytes).unwrap();
        log["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    format!("{} {}", r["ruleId"], r["properties"]["subject"]),
                    r["partialFingerprints"]["syncproofFinding/v1"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect()
    };
    let first = fingerprints(&check("sarif", &[]));
    let again = fingerprints(&check("sarif", &[]));
    assert_eq!(first, again);
    // An hour later the facts (ages) change; a finding keeps its fingerprint.
    let later = fingerprints(&check("sarif", &["--as-of", "2026-11-20T13:00:00Z"]));
    for (finding, fp) in &later {
        if let Some((_, before)) = first.iter().find(|(f, _)| f == finding) {
            assert_eq!(fp, before, "{finding}");
        }
    }
    let distinct: std::collections::BTreeSet<&String> = first.iter().map(|(_, fp)| fp).collect();
    assert_eq!(distinct.len(), first.len());
    assert!(first.iter().all(|(_, fp)| fp.len() == 64));
}

#[test]
fn sarif_excepted_finding_is_an_accepted_suppression_and_validates() {
    let e = excepted_samples();
    let a = e.assessment();
    let mut out = Vec::new();
    sarif::render(&a, &e.pack.catalog, "samples", &mut out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "findings.sarif", &out);
    check_with(
        "validate_schema.py",
        &[&schema("sarif-schema-2.1.0.json"), &path],
    );
    let log: Value = serde_json::from_slice(&out).unwrap();
    let suppressed: Vec<&Value> = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("suppressions").is_some())
        .collect();
    assert_eq!(suppressed.len(), 1);
    let s = &suppressed[0]["suppressions"][0];
    assert_eq!(suppressed[0]["properties"]["subject"], BREAKGLASS.1);
    assert_eq!(s["kind"], "external");
    assert_eq!(s["status"], "accepted");
    let j = s["justification"].as_str().unwrap();
    assert!(
        j.contains("EXC-TEST-1")
            && j.contains("ciso@example.com")
            && j.contains("2026-12-31T23:59:59Z"),
        "{j}"
    );
}

// --- JUnit -----------------------------------------------------------------

/// Parses a JUnit file with `parse_junit.py`.
fn parse_junit(path: &Path) -> Value {
    serde_json::from_str(&check_with("parse_junit.py", &[path])).unwrap()
}

#[test]
fn junit_from_check_parses_and_counts_every_evaluated_subject() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "findings.junit.xml", &check("junit", &[]));
    let report = parse_junit(&path);
    let a = json_assessment();
    let findings = a["findings"].as_array().unwrap();
    let open = findings
        .iter()
        .filter(|f| f.get("exception").is_none())
        .count() as u64;
    let evaluated: u64 = a["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["evaluated"].as_u64().unwrap())
        .sum();
    assert_eq!(report["counted"]["failures"], open);
    assert_eq!(report["counted"]["tests"], evaluated);
    assert_eq!(report["claimed"]["failures"], open);
    assert_eq!(report["claimed"]["tests"], evaluated);
    assert_eq!(report["name"], "syncproof");
    let suites = report["suites"].as_array().unwrap();
    assert_eq!(suites.len(), a["policies"].as_array().unwrap().len());
    for (suite, policy) in suites.iter().zip(a["policies"].as_array().unwrap()) {
        assert_eq!(suite["name"], policy["id"]);
        assert_eq!(suite["tests"], policy["evaluated"]);
        // Excepted findings are skipped cases, not failures.
        assert_eq!(
            suite["failures"].as_u64().unwrap(),
            policy["failed"].as_u64().unwrap() - policy["excepted"].as_u64().unwrap()
        );
        let names: std::collections::BTreeSet<&str> = suite["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len() as u64, policy["evaluated"].as_u64().unwrap());
    }
    let not_revoked = suites.iter().find(|s| s["name"] == "not-revoked").unwrap();
    let failing = not_revoked["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["result"] == "failure")
        .unwrap();
    assert_eq!(failing["classname"], "syncproof.critical.not_revoked");
    assert_eq!(failing["type"], "critical");
    let text = failing["text"].as_str().unwrap();
    assert!(
        text.contains("controls: ") && text.contains("evidence: "),
        "{text}"
    );
}

#[test]
fn junit_excepted_finding_is_skipped_with_its_exception() {
    let e = excepted_samples();
    let a = e.assessment();
    let mut out = Vec::new();
    junit::render(&a, &e.eval, &mut out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = parse_junit(&write(dir.path(), "findings.junit.xml", &out));
    assert_eq!(report["counted"]["skipped"], 1);
    assert_eq!(
        report["counted"]["failures"].as_u64().unwrap() as usize,
        a.findings.len() - 1
    );
    let case = report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["cases"].as_array().unwrap())
        .find(|c| c["result"] == "skipped")
        .unwrap();
    assert_eq!(case["name"], BREAKGLASS.1);
    assert_eq!(
        case["message"],
        "excepted by EXC-TEST-1: Break-glass <admin> & \"vaulted\" (approved by ciso@example.com, expires 2026-12-31T23:59:59Z)"
    );
}

#[test]
fn junit_escapes_xml_special_characters_in_subject_ids() {
    let mut e = Evaluated::samples(true);
    let weird = "grant:crm-saas/<&\">'/crm:admin";
    let f = e
        .eval
        .findings
        .iter_mut()
        .find(|f| f.policy_id == BREAKGLASS.0 && f.subject.id == BREAKGLASS.1)
        .unwrap();
    f.subject.id = weird.to_owned();
    f.facts = "facts with <tags> & \"quotes\"".to_owned();
    let mut renamed = syncproof::policy::subjects::EvaluatedSubjects::default();
    for (kind, id) in e.eval.evaluated.to_vec().unwrap() {
        renamed.push(kind, if id == BREAKGLASS.1 { weird } else { &id });
    }
    // The renamed list may be out of order: it is sorted as it is kept.
    e.eval.evaluated = syncproof::policy::subjects::SubjectLists::from_subjects(renamed).unwrap();
    let a = e.assessment();
    let mut out = Vec::new();
    junit::render(&a, &e.eval, &mut out).unwrap();
    let xml = String::from_utf8(out.clone()).unwrap();
    assert!(!xml.contains(weird), "unescaped subject id in the XML");
    let dir = tempfile::tempdir().unwrap();
    let report = parse_junit(&write(dir.path(), "findings.junit.xml", &out));
    let case = report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == BREAKGLASS.0)
        .flat_map(|s| s["cases"].as_array().unwrap())
        .find(|c| c["name"] == weird)
        .expect("the subject id round-trips through a real XML parser");
    assert_eq!(case["result"], "failure");
    assert!(case["text"]
        .as_str()
        .unwrap()
        .starts_with("facts with <tags> & \"quotes\""));
}

#[test]
fn junit_refuses_an_evaluation_without_subjects() {
    let e = Evaluated::samples(false);
    let err = junit::render(&e.assessment(), &e.eval, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, FormatError::SubjectsNotKept), "{err:?}");
}

// --- OSCAL -----------------------------------------------------------------

/// Validates an OSCAL file against the schema and loads it in trestle;
/// returns trestle's summary.
fn check_oscal(path: &Path) -> Value {
    check_with(
        "validate_schema.py",
        &[&schema("oscal_complete_schema-1.1.3.json"), path],
    );
    serde_json::from_str(&check_with("load_oscal.py", &[path])).unwrap()
}

#[test]
fn oscal_from_check_validates_and_loads_in_trestle() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = check("oscal", &[]);
    let summary = check_oscal(&write(dir.path(), "assessment-results.oscal.json", &bytes));
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let ar = &doc["assessment-results"];
    assert_eq!(ar["metadata"]["oscal-version"], "1.1.3");
    assert_eq!(ar["metadata"]["last-modified"], "2026-11-20T12:00:00Z");
    let result = &summary["results"][0];
    let controls: Vec<&str> = result["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(controls.contains(&"ac-2.3") && controls.contains(&"pr.aa-05"));
    let a = json_assessment();
    // Open risks are the findings no live exception covers.
    let open = a["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("exception").is_none())
        .count();
    assert_eq!(result["risks"]["open"].as_u64().unwrap() as usize, open);
    // One observation per input file; snapshots expire with their tier.
    let r = &ar["results"][0];
    let observations = r["observations"].as_array().unwrap();
    assert_eq!(
        result["observations"].as_u64().unwrap() as usize,
        observations.len()
    );
    let legacy = observations
        .iter()
        .find(|o| {
            o["relevant-evidence"][0]["href"] == "snapshots/legacy-hr/access-export-2026-10-15.csv"
        })
        .unwrap();
    assert_eq!(legacy["collected"], "2026-10-15T02:00:00Z");
    assert_eq!(legacy["expires"], "2026-11-14T02:00:00Z");
    // The original control id is kept beside the OSCAL token.
    let finding = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["target"]["target-id"] == "ac-2.3_obj")
        .unwrap();
    assert_eq!(finding["props"][0]["name"], "label");
    assert_eq!(finding["props"][0]["value"], "AC-2(3)");
    assert_eq!(finding["target"]["status"]["state"], "not-satisfied");
}

#[test]
fn oscal_excepted_finding_is_an_approved_deviation() {
    let e = excepted_samples();
    let a = e.assessment();
    let mut out = Vec::new();
    oscal::render(
        &a,
        &e.reconciled,
        &e.pack.catalog,
        Some(&e.pack.tiers),
        &mut out,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = check_oscal(&write(dir.path(), "assessment-results.oscal.json", &out));
    assert_eq!(summary["results"][0]["risks"]["deviation-approved"], 1);
    let doc: Value = serde_json::from_slice(&out).unwrap();
    let r = &doc["assessment-results"]["results"][0];
    let risk = r["risks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["status"] == "deviation-approved")
        .unwrap();
    assert_eq!(risk["deadline"], "2026-12-31T23:59:59Z");
    let uuid = risk["uuid"].clone();
    let linked = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["related-risks"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|x| x["risk-uuid"] == uuid))
        })
        .count();
    assert!(linked > 0, "no finding links the excepted risk");
}

// --- All formats -----------------------------------------------------------

#[test]
fn every_format_renders_identical_bytes_twice() {
    for format in ["sarif", "junit", "oscal"] {
        assert_eq!(check(format, &[]), check(format, &[]), "{format}");
    }
    let e = excepted_samples();
    let a = e.assessment();
    let first = machine_files(&a, &e.eval, &e.reconciled, &e.pack.catalog).unwrap();
    let second = machine_files(&a, &e.eval, &e.reconciled, &e.pack.catalog).unwrap();
    assert_eq!(first, second);
}

#[test]
fn machine_files_are_the_three_pack_files_and_all_validate() {
    let e = excepted_samples();
    let a = e.assessment();
    let files = machine_files(&a, &e.eval, &e.reconciled, &e.pack.catalog).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "findings.sarif",
            "findings.junit.xml",
            "assessment-results.oscal.json"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, bytes)| write(dir.path(), name, bytes))
        .collect();
    check_with(
        "validate_schema.py",
        &[&schema("sarif-schema-2.1.0.json"), &paths[0]],
    );
    let report = parse_junit(&paths[1]);
    assert_eq!(report["counted"]["skipped"], 1);
    check_oscal(&paths[2]);
    // In a pack, SARIF paths are relative to the collection root.
    let log: Value = serde_json::from_slice(&files[0].1).unwrap();
    let uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
        ["uri"]
        .as_str()
        .unwrap();
    assert!(root().join("samples").join(uri).is_file(), "{uri}");
}

#[test]
fn validators_reject_broken_documents() {
    // The checks are only worth something if they can fail.
    let dir = tempfile::tempdir().unwrap();
    let mut log: Value = serde_json::from_slice(&check("sarif", &[])).unwrap();
    log["runs"][0]["results"][0]["level"] = Value::from("fatal");
    let bad = write(dir.path(), "bad.sarif", log.to_string().as_bytes());
    let out = python(
        "validate_schema.py",
        &[&schema("sarif-schema-2.1.0.json"), &bad],
    );
    assert_eq!(out.status.code(), Some(1));
    let mut doc: Value = serde_json::from_slice(&check("oscal", &[])).unwrap();
    doc["assessment-results"]["results"][0]["reviewed-controls"]["control-selections"][0]
        ["include-controls"][0]["control-id"] = Value::from("AC-2(3)");
    let bad = write(dir.path(), "bad.oscal.json", doc.to_string().as_bytes());
    let out = python(
        "validate_schema.py",
        &[&schema("oscal_complete_schema-1.1.3.json"), &bad],
    );
    assert_eq!(out.status.code(), Some(1));
    let bad = write(dir.path(), "bad.junit.xml", b"<testsuites><testsuite");
    assert_eq!(python("parse_junit.py", &[&bad]).status.code(), Some(1));
}

/// A writer that takes `budget` bytes, then fails.
struct FailsAfter {
    budget: usize,
    got: Vec<u8>,
}

impl std::io::Write for FailsAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.budget == 0 {
            return Err(std::io::Error::other("disk full (test)"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that takes at most 7 bytes per call.
struct FewAtATime(Vec<u8>);

impl std::io::Write for FewAtATime {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn reports_rendered_to_a_writer_match_the_strings_and_writer_errors_are_reported() {
    use syncproof::evidence::render::{
        RenderError, ReportContext, Templates, HTML_TEMPLATE, MD_TEMPLATE,
    };
    use syncproof::evidence::report::Report;
    let e = Evaluated::samples(false);
    let a = e.assessment();
    let report = Report::new(&e.reconciled, &e.pack, &a, "key-id", false);
    let templates = Templates::builtin();
    let context = ReportContext::new(&report);
    for name in [HTML_TEMPLATE, MD_TEMPLATE] {
        let whole = templates.render_one(name, &context).unwrap();
        assert!(whole.ends_with('\n') && whole.len() > 1000, "{name}");
        // A writer that takes a few bytes per call gets the same text.
        let mut streamed = FewAtATime(Vec::new());
        templates.render_to(name, &context, &mut streamed).unwrap();
        assert_eq!(String::from_utf8(streamed.0).unwrap(), whole, "{name}");
        // A writer that fails part-way: its own error, naming the template.
        let mut failing = FailsAfter {
            budget: 100,
            got: Vec::new(),
        };
        let err = templates
            .render_to(name, &context, &mut failing)
            .unwrap_err();
        assert!(matches!(err, RenderError::Write { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains(name) && shown.contains("disk full (test)"),
            "{shown}"
        );
        assert_eq!(failing.got, whole.as_bytes()[..100]);
    }
}

#[test]
fn findings_json_written_to_a_writer_is_pretty_json_with_a_newline_and_writer_errors_are_reported()
{
    let e = Evaluated::samples(false);
    let a = e.assessment();
    let whole = serde_json::to_string_pretty(&a).unwrap() + "\n";
    assert!(whole.ends_with("}\n") && whole.contains("\"findings\""));
    let mut streamed = FewAtATime(Vec::new());
    a.write_json(&mut streamed).unwrap();
    assert_eq!(String::from_utf8(streamed.0).unwrap(), whole);
    // A writer that fails part-way (or just before the final newline).
    for budget in [100, whole.len() - 1] {
        let mut failing = FailsAfter {
            budget,
            got: Vec::new(),
        };
        let err = a.write_json(&mut failing).unwrap_err();
        assert!(err.to_string().contains("disk full (test)"), "{err}");
        assert_eq!(failing.got, whole.as_bytes()[..budget]);
    }
}
