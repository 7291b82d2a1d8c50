//! `syncproof check`: the planted findings of `samples/README.md`, their
//! severities, controls and evidence, the exit codes of the CI gate, custom
//! and broken policy packs, and deterministic output.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use predicates::prelude::*;
use serde_json::Value;

use super::support::{
    assert_names, fixture, json_of, refusal_of, repo, samples, sha256_hex, stdout_of, syncproof,
};

/// `check COLLECTION --format json EXTRA...`, expecting `code`.
fn check_json(collection: &Path, extra: &[&str], code: i32) -> Value {
    let mut cmd = syncproof(["check"]);
    cmd.arg(collection).args(["--format", "json"]).args(extra);
    json_of(&mut cmd, code)
}

fn findings(report: &Value) -> &Vec<Value> {
    report["findings"].as_array().unwrap()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

/// Every (policy_id, subject.id) the samples plant.
const PLANTED: &[(&str, &str, &str)] = &[
    // (policy, subject, severity)
    (
        "not-revoked",
        "grant:crm-saas/dan.reyes/crm:sales-rep",
        "critical",
    ),
    (
        "not-revoked",
        "grant:github-org/dan.reyes/org:member",
        "critical",
    ),
    (
        "not-revoked",
        "grant:github-org/dan.reyes/repo:payments-service:write",
        "critical",
    ),
    (
        "not-revoked",
        "grant:github-org/ines.duarte/repo:payments-service:admin",
        "critical",
    ),
    (
        "not-revoked",
        "grant:legacy-hr/SVC_PAYROLL/hr:payroll-edit",
        "critical",
    ),
    (
        "not-revoked",
        "grant:payments-db/frank.li/db:write",
        "critical",
    ),
    (
        "not-revoked",
        "grant:payments-db/kate.moreau/db:read",
        "critical",
    ),
    (
        "not-revoked",
        "grant:payments-db/kate.moreau/ledger:approve",
        "critical",
    ),
    ("change-failed", "change:chg-crm-0304", "high"),
    ("change-failed", "change:chg-pay-0002", "high"),
    ("connector-silent", "connector:legacy-hr", "high"),
    (
        "expired-grant",
        "grant:github-org/hiro.tanaka/repo:payments-service:write",
        "high",
    ),
    (
        "orphan-account",
        "account:payments-db/tmp_migration",
        "high",
    ),
    ("revocation-unconfirmed", "change:chg-pay-0002", "high"),
    ("revocation-unconfirmed", "change:chg-pay-0003", "high"),
    ("revocation-unconfirmed", "change:chg-pay-0004", "high"),
    (
        "unauthorized-access",
        "grant:crm-saas/breakglass-admin/crm:admin",
        "high",
    ),
    (
        "unauthorized-access",
        "grant:crm-saas/maria.rossi/crm:admin",
        "high",
    ),
    ("connector-failing", "connector:crm", "medium"),
    ("grant-age", "grant:legacy-hr/OCHEN/hr:admin", "medium"),
    (
        "grant-age",
        "grant:payments-db/anguyen_dba/db:admin",
        "medium",
    ),
    (
        "grant-age",
        "grant:payments-db/svc-payments-batch/db:write",
        "medium",
    ),
    (
        "missed-event",
        "assignment:crm-saas/frank.li/crm:read",
        "medium",
    ),
    ("snapshot-stale", "snapshot:legacy-hr", "medium"),
    ("sync-latency", "change:chg-gh-0101", "medium"),
    ("sync-overdue", "change:chg-gh-0103", "medium"),
];

#[test]
fn findings_are_exactly_the_planted_cases() {
    let report = check_json(&samples(), &[], 1);
    let got: BTreeSet<(String, String)> = findings(&report)
        .iter()
        .map(|f| (str_of(&f["policy_id"]), str_of(&f["subject"]["id"])))
        .collect();
    let want: BTreeSet<(String, String)> = PLANTED
        .iter()
        .map(|(p, s, _)| ((*p).to_owned(), (*s).to_owned()))
        .collect();
    assert_eq!(findings(&report).len(), PLANTED.len(), "no duplicates");
    assert_eq!(got, want);
}

#[test]
fn boundary_cases_do_not_fire() {
    let report = check_json(&samples(), &[], 1);
    let fired: BTreeSet<String> = findings(&report)
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                str_of(&f["policy_id"]),
                str_of(&f["subject"]["id"])
            )
        })
        .collect();
    for absent in [
        // #1 confirmed exactly at 15m; #8 out-of-order revoke in 20m.
        "sync-latency change:chg-pay-0001",
        "revocation-unconfirmed change:chg-pay-0005",
        // #18 pending 1d16h within 72h.
        "revocation-unconfirmed change:chg-hr-0401",
        // #35 exactly 90d old.
        "grant-age grant:payments-db/wl-payments-api/db:read",
        // #38 silent exactly 15m, its only error long ago.
        "connector-silent connector:payments",
        "connector-failing connector:payments",
        // #37 failing, not silent.
        "connector-silent connector:crm",
    ] {
        assert!(!fired.contains(absent), "{absent} fired");
    }
}

#[test]
fn severities_are_the_policies_severities() {
    let report = check_json(&samples(), &[], 1);
    let want: BTreeMap<(String, String), String> = PLANTED
        .iter()
        .map(|(p, s, sev)| (((*p).to_owned(), (*s).to_owned()), (*sev).to_owned()))
        .collect();
    for f in findings(&report) {
        let key = (str_of(&f["policy_id"]), str_of(&f["subject"]["id"]));
        assert_eq!(f["severity"], want[&key].as_str(), "{key:?}");
    }
    let by = &report["counts"]["by_severity"];
    assert_eq!(
        (
            by["critical"].as_u64(),
            by["high"].as_u64(),
            by["medium"].as_u64(),
            by["low"].as_u64()
        ),
        // The break-glass finding covered by EXC-2026-014 is counted apart.
        (Some(8), Some(9), Some(8), Some(0))
    );
}

#[test]
fn nhi_controls_are_claimed_only_for_non_human_subjects() {
    let report = check_json(&samples(), &[], 1);
    let non_human = ["service_account", "api_key", "bot", "workload"];
    let mut nhi_claims = BTreeSet::new();
    for f in findings(&report) {
        let kind = str_of(&f["subject"]["identity_kind"]);
        for c in f["controls"].as_array().unwrap() {
            let c = str_of(c);
            if c.starts_with("NHI") && c.ends_with(":2025") {
                assert!(
                    non_human.contains(&kind.as_str()),
                    "{} on {} ({kind:?}) claims {c}",
                    f["policy_id"],
                    f["subject"]["id"]
                );
                nhi_claims.insert((str_of(&f["policy_id"]), str_of(&f["subject"]["id"]), c));
            }
        }
    }
    // The non-human findings do claim them (the rule is not just "never").
    assert!(nhi_claims.contains(&(
        "not-revoked".into(),
        "grant:legacy-hr/SVC_PAYROLL/hr:payroll-edit".into(),
        "NHI1:2025".into()
    )));
    assert!(nhi_claims.contains(&(
        "grant-age".into(),
        "grant:payments-db/svc-payments-batch/db:write".into(),
        "NHI5:2025".into()
    )));
}

#[test]
fn no_finding_claims_a_csf_1_1_id() {
    let report = check_json(&samples(), &[], 1);
    // CSF 1.1 ids: one-digit suffix or a 1.1-only category.
    let is_csf11 = |c: &str| {
        let Some((cat, num)) = c.split_once('-') else {
            return false;
        };
        let csf_cat = cat.len() == 5
            && cat.as_bytes()[2] == b'.'
            && cat[..2].chars().all(|x| x.is_ascii_uppercase());
        csf_cat && (num.len() == 1 || cat == "PR.AC" || cat == "PR.PT" || cat == "PR.DS")
    };
    assert!(is_csf11("PR.AC-4") && is_csf11("DE.CM-1") && !is_csf11("PR.AA-05"));
    for f in findings(&report) {
        for c in f["controls"].as_array().unwrap() {
            assert!(
                !is_csf11(c.as_str().unwrap()),
                "{} claims {c}",
                f["policy_id"]
            );
        }
    }
}

/// The bytes of the SCIM resource (a JSON object) that starts on `line`.
fn scim_resource(text: &str, line: usize) -> &str {
    let start_of_line: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let start = start_of_line + text[start_of_line..].find('{').unwrap();
    let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    de.next().unwrap().unwrap();
    &text[start..start + de.byte_offset()]
}

#[test]
fn evidence_digests_match_the_cited_records() {
    let report = check_json(&samples(), &[], 1);
    let mut checked = BTreeMap::<&str, usize>::new();
    for f in findings(&report) {
        for e in f["evidence"].as_array().unwrap() {
            let file = e["file"].as_str().unwrap();
            let line = e["line"].as_u64().unwrap() as usize;
            let sha = e["sha256"].as_str().unwrap();
            let text = fs::read_to_string(samples().join(file)).unwrap();
            let what = format!("{} {}: {file}:{line}", f["policy_id"], f["subject"]["id"]);
            if line == 0 {
                // Whole-file evidence (a snapshot's age).
                assert_eq!(sha256_hex(text.as_bytes()), sha, "{what}");
                *checked.entry("file").or_default() += 1;
            } else if file.ends_with(".jsonl")
                || file.ends_with(".ndjson")
                || file.ends_with(".csv")
            {
                let record = text.lines().nth(line - 1).unwrap();
                assert_eq!(sha256_hex(record.as_bytes()), sha, "{what}");
                *checked.entry("line").or_default() += 1;
            } else if file.ends_with(".json") {
                let record = scim_resource(&text, line);
                assert_eq!(sha256_hex(record.as_bytes()), sha, "{what}");
                *checked.entry("scim").or_default() += 1;
            } else {
                // The desired state's records are hashed in a canonical JSON
                // form; check at least that the line starts the list item of
                // the finding's identity.
                let record = text.lines().nth(line - 1).unwrap();
                let identity = str_of(&f["subject"]["identity"]);
                assert_eq!(record, format!("  - identity: {identity}"), "{what}");
                *checked.entry("yaml").or_default() += 1;
            }
        }
    }
    assert!(
        checked["line"] > 20 && checked["scim"] > 5 && checked["file"] == 1,
        "{checked:?}"
    );
}

#[test]
fn samples_fail_the_default_gate() {
    syncproof(["check"])
        .arg(samples())
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with(
        "FAIL: 25 finding(s) at or above `low` (8 critical, 9 high, 8 medium, 0 low, 1 excepted)",
    ));
}

#[test]
fn timings_name_every_phase_on_stderr_and_leave_stdout_alone() {
    let plain = syncproof(["check"])
        .arg(samples())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let timed = syncproof(["check"])
        .arg(samples())
        .args(["--format", "json", "--timings"])
        .output()
        .unwrap();
    assert_eq!(timed.status.code(), Some(1));
    assert_eq!(timed.stdout, plain.stdout);
    assert!(plain.stderr.is_empty());
    let stderr = String::from_utf8(timed.stderr).unwrap();
    assert_names(
        &stderr,
        &[
            "reading desired state and sync logs",
            "reconciling and evaluating applications",
            "evaluating policies",
            "of which inside Cedar's authorizer",
            "summed over threads",
            "total",
        ],
    );
}

#[test]
fn clean_collection_passes() {
    syncproof(["check"])
        .arg(fixture("clean"))
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with(
            "PASS: no finding at or above `low`",
        ));
    let report = check_json(&fixture("clean"), &[], 0);
    assert_eq!(report["verdict"], "pass");
    assert!(findings(&report).is_empty());
    assert!(
        report["subjects"]["change"].as_u64().unwrap() > 0,
        "it evaluated something"
    );
}

/// The clean fixture with one application's snapshot 50 days old: its only
/// finding is `snapshot-stale` (medium).
fn medium_only() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("medium-only");
    super::support::copy_dir(&fixture("clean"), &c);
    let manifest = c.join("collection.yaml");
    let text = fs::read_to_string(&manifest).unwrap();
    let stale = text.replacen(
        "taken_at: 2026-11-19T12:00:00Z",
        "taken_at: 2026-10-01T12:00:00Z",
        1,
    );
    assert_ne!(stale, text);
    fs::write(&manifest, stale).unwrap();
    (dir, c)
}

#[test]
fn fail_on_critical_passes_a_collection_with_only_medium_findings() {
    let (_d, c) = medium_only();
    let report = check_json(&c, &[], 1);
    let got: Vec<(String, String, String)> = findings(&report)
        .iter()
        .map(|f| {
            (
                str_of(&f["policy_id"]),
                str_of(&f["severity"]),
                str_of(&f["subject"]["id"]),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(
            "snapshot-stale".into(),
            "medium".into(),
            "snapshot:reports".into()
        )]
    );
    for (level, code) in [("critical", 0), ("high", 0), ("medium", 1), ("low", 1)] {
        syncproof(["check"])
            .arg(&c)
            .args(["--fail-on", level])
            .assert()
            .code(code);
    }
}

#[test]
fn text_output_starts_with_the_verdict_and_groups_by_severity() {
    let text = stdout_of(syncproof(["check"]).arg(samples()), 1);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("FAIL: "), "{first}");
    let pos = |h: &str| {
        text.find(&format!("\n{h}"))
            .unwrap_or_else(|| panic!("no {h}"))
    };
    assert!(pos("CRITICAL (8)") < pos("HIGH (10)"));
    assert!(pos("HIGH (10)") < pos("MEDIUM (8)"));
    assert!(!text.contains("\nLOW ("), "no empty group");
    // Each finding sits under its severity's heading.
    let critical = &text[pos("CRITICAL (8)")..pos("HIGH (10)")];
    assert!(critical.contains("grant:github-org/ines.duarte/repo:payments-service:admin"));
    assert!(!critical.contains("change:chg-gh-0101"));
    let medium = &text[pos("MEDIUM (8)")..];
    assert!(medium.contains("change:chg-gh-0101"));
}

const NHI_VIA_GROUP_ONLY: &str = r#"// An NHI whose access comes only through group membership.
// Reviews of its direct grants do not show it.
@id("nhi-via-group-only")
@title("Non-human identity holds access only through groups")
@severity("high")
@controls("NHI5:2025, PR.AA-05, AC-6")
@remediation("Grant NHI access directly and narrowly so reviews see it, and remove the group membership.")
forbid (principal, action == SyncProof::Action::"grant", resource)
when { !principal.human && context.via_group_only };
"#;

/// A `--policies` directory holding the custom rule edited by `edit`.
fn policy_dir(edit: impl FnOnce(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = edit(NHI_VIA_GROUP_ONLY);
    fs::write(dir.path().join("nhi-via-group-only.cedar"), text).unwrap();
    dir
}

#[test]
fn custom_policy_fires_on_the_service_account_held_via_a_group() {
    let dir = policy_dir(str::to_owned);
    let report = check_json(&samples(), &["--policies", dir.path().to_str().unwrap()], 1);
    let custom: Vec<&Value> = findings(&report)
        .iter()
        .filter(|f| f["policy_id"] == "nhi-via-group-only")
        .collect();
    assert_eq!(custom.len(), 1, "{custom:?}");
    assert_eq!(
        custom[0]["subject"]["id"],
        "grant:legacy-hr/SVC_PAYROLL/hr:payroll-edit"
    );
    assert_eq!(custom[0]["subject"]["identity"], "svc-legacy-payroll");
    assert_eq!(custom[0]["severity"], "high");
    assert_eq!(
        custom[0]["controls"],
        serde_json::json!(["NHI5:2025", "PR.AA-05", "AC-6"])
    );
    // The shipped rules stay in force.
    assert_eq!(findings(&report).len(), PLANTED.len() + 1);

    syncproof(["policy", "list", "--policies"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("nhi-via-group-only"));
}

/// `policy validate` and `check` both refuse the pack with exit 2; returns
/// `policy validate`'s stderr.
fn refused_pack(dir: &Path) -> String {
    syncproof(["check"])
        .arg(samples())
        .arg("--policies")
        .arg(dir)
        .assert()
        .code(2)
        .stdout("");
    refusal_of(syncproof(["policy", "validate", "--policies"]).arg(dir))
}

#[test]
fn malformed_policy_is_refused_naming_the_file() {
    let dir = policy_dir(|p| p.replace("when {", "when {{ oops"));
    assert_names(
        &refused_pack(dir.path()),
        &["nhi-via-group-only.cedar", "not valid Cedar", "line 9"],
    );
}

#[test]
fn policy_failing_schema_validation_is_refused() {
    let dir = policy_dir(|p| p.replace("context.via_group_only", "context.no_such_field"));
    assert_names(
        &refused_pack(dir.path()),
        &["nhi-via-group-only.cedar", "`no_such_field`", "not found"],
    );
}

#[test]
fn unknown_severity_is_refused_with_file_and_line() {
    let dir = policy_dir(|p| p.replace("@severity(\"high\")", "@severity(\"urgent\")"));
    assert_names(
        &refused_pack(dir.path()),
        &["nhi-via-group-only.cedar:3", "unknown severity `urgent`"],
    );
}

#[test]
fn unknown_control_id_is_refused_with_file_and_line() {
    let dir = policy_dir(|p| p.replace("NHI5:2025", "NHI-05"));
    assert_names(
        &refused_pack(dir.path()),
        &["nhi-via-group-only.cedar:3", "unknown control `NHI-05`"],
    );
}

#[test]
fn csf_1_1_control_id_is_refused() {
    let dir = policy_dir(|p| p.replace("AC-6\")", "PR.AC-4\")"));
    assert_names(
        &refused_pack(dir.path()),
        &["nhi-via-group-only.cedar:3", "`PR.AC-4`", "PR.AA-05"],
    );
}

#[test]
fn missing_id_is_refused_with_file_and_line() {
    let dir = policy_dir(|p| p.replace("@id(\"nhi-via-group-only\")\n", ""));
    assert_names(
        &refused_pack(dir.path()),
        &["nhi-via-group-only.cedar:3", "no `@id`"],
    );
}

#[test]
fn shipped_pack_validates_and_lists_every_policy() {
    syncproof(["policy", "validate"])
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with(
            "valid: 14 policies (13 forbid)",
        ));
    let list = stdout_of(&mut syncproof(["policy", "list"]), 0);
    for entry in fs::read_dir(repo().join("policies")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".cedar") {
            assert!(list.contains(&format!("{name}:")), "{name} not listed");
            assert!(list.lines().any(|l| l.starts_with(id)), "{id} not listed");
        }
    }
}

#[test]
fn output_is_byte_identical_across_runs() {
    for format in ["json", "text"] {
        let run = || {
            stdout_of(
                syncproof(["check"])
                    .arg(samples())
                    .args(["--format", format]),
                1,
            )
        };
        assert_eq!(run(), run(), "{format}");
    }
}

#[test]
fn live_exception_suppresses_the_break_glass_finding() {
    let report = check_json(&samples(), &[], 1);
    let breakglass = findings(&report)
        .iter()
        .find(|f| f["subject"]["id"] == "grant:crm-saas/breakglass-admin/crm:admin")
        .expect("the excepted finding stays visible");
    assert_eq!(breakglass["exception"]["id"], "EXC-2026-014");
    assert_eq!(report["counts"]["excepted"], 1);
    assert_eq!(report["counts"]["failing"], 25);
    // EXC-2026-009 has expired: the expired-grant finding stays open.
    let expired = findings(&report)
        .iter()
        .find(|f| f["policy_id"] == "expired-grant")
        .unwrap();
    assert!(expired.get("exception").is_none());
}
