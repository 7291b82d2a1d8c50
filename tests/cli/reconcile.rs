//! `syncproof reconcile`: the planted cases of `samples/README.md` come out as
//! documented, `--as-of` is honoured, output is deterministic, and bad input is
//! refused (or quarantined) with the file and line named.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use predicates::prelude::*;
use serde_json::Value;

use super::support::{
    assert_names, json_of, refusal_of, replace_in_line, samples, samples_copy, stdout_of, syncproof,
};

const LOG19: &str = "logs/sync-2026-11-19.jsonl";

/// `reconcile COLLECTION --format json` (exit 0), parsed.
fn reconcile_json(collection: &Path, extra: &[&str]) -> Value {
    let mut cmd = syncproof(["reconcile"]);
    cmd.arg(collection).args(["--format", "json"]).args(extra);
    json_of(&mut cmd, 0)
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

/// Idempotency keys by change status.
fn keys_by_status(r: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in r["changes"].as_array().unwrap() {
        out.entry(str_of(&c["status"]))
            .or_default()
            .insert(str_of(&c["key"]));
    }
    out
}

fn change<'a>(r: &'a Value, key: &str) -> &'a Value {
    r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no change {key}"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn change_statuses_match_the_planted_lifecycles() {
    let r = reconcile_json(&samples(), &[]);
    assert_eq!(r["changes"].as_array().unwrap().len(), 19);
    let by = keys_by_status(&r);
    assert_eq!(by["confirmed"].len(), 14, "{by:?}");
    assert_eq!(by["failed"], set(&["chg-pay-0002", "chg-crm-0304"]));
    assert_eq!(
        by["pending"],
        set(&["chg-pay-0003", "chg-gh-0103", "chg-hr-0401"])
    );
    // Latencies a reader of samples/README.md checks first.
    for (key, latency) in [
        ("chg-pay-0001", "15m"),
        ("chg-gh-0101", "2h10m"),
        ("chg-crm-0201", "10m"),
        ("chg-pay-0004", "1h40m"),
        ("chg-pay-0005", "20m"),
        ("chg-gh-0105", "4m"),
        ("chg-crm-0202", "35m"),
    ] {
        assert_eq!(change(&r, key)["latency"], latency, "{key}");
    }
    assert_eq!(change(&r, "chg-crm-0201")["attempts"], 2);
    assert_eq!(change(&r, "chg-pay-0003")["pending_for"], "3h55m");
    assert_eq!(change(&r, "chg-gh-0103")["pending_for"], "7h");
    assert_eq!(change(&r, "chg-hr-0401")["pending_for"], "1d16h");
}

#[test]
fn drift_records_equal_the_planted_set() {
    let r = reconcile_json(&samples(), &[]);
    let got: BTreeSet<(String, String, String, String)> = r["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let who = if d["identity"].is_null() {
                str_of(&d["account"])
            } else {
                str_of(&d["identity"])
            };
            (
                str_of(&d["class"]),
                str_of(&d["application"]),
                who,
                str_of(&d["entitlement"]),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = [
        (
            "not_provisioned",
            "github-org",
            "jamal.price",
            "repo:infra:write",
        ),
        (
            "not_provisioned",
            "crm-saas",
            "olivia.chen",
            "crm:sales-manager",
        ),
        ("missed_event", "crm-saas", "frank.li", "crm:read"),
        (
            "expired_still_effective",
            "github-org",
            "hiro.tanaka",
            "repo:payments-service:write",
        ),
        (
            "not_revoked",
            "github-org",
            "ines.duarte",
            "repo:payments-service:admin",
        ),
        ("not_revoked", "payments-db", "frank.li", "db:write"),
        ("not_revoked", "payments-db", "kate.moreau", "db:read"),
        (
            "not_revoked",
            "payments-db",
            "kate.moreau",
            "ledger:approve",
        ),
        ("not_revoked", "github-org", "dan.reyes", "org:member"),
        (
            "not_revoked",
            "github-org",
            "dan.reyes",
            "repo:payments-service:write",
        ),
        ("not_revoked", "crm-saas", "dan.reyes", "crm:sales-rep"),
        (
            "not_revoked",
            "legacy-hr",
            "svc-legacy-payroll",
            "hr:payroll-edit",
        ),
        ("unauthorized", "crm-saas", "maria.rossi", "crm:admin"),
        (
            "unauthorized",
            "crm-saas",
            "svc-crm-breakglass",
            "crm:admin",
        ),
        ("orphan_account", "payments-db", "tmp_migration", ""),
    ]
    .iter()
    .map(|(a, b, c, d)| ((*a).into(), (*b).into(), (*c).into(), (*d).into()))
    .collect();
    assert_eq!(r["drift"].as_array().unwrap().len(), 15, "one record each");
    assert_eq!(got, want);
    // The explained gaps name the change that explains them.
    let explained: BTreeMap<String, String> = r["drift"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] == "not_provisioned")
        .map(|d| (str_of(&d["identity"]), str_of(&d["change"])))
        .collect();
    assert_eq!(explained["jamal.price"], "chg-gh-0103");
    assert_eq!(explained["olivia.chen"], "chg-crm-0304");
}

#[test]
fn not_drift_cases_stay_out_of_drift() {
    let r = reconcile_json(&samples(), &[]);
    let drift = r["drift"].as_array().unwrap();
    let has = |who: &str, ent: &str| {
        drift
            .iter()
            .any(|d| d["identity"] == who && d["entitlement"] == ent)
    };
    // #31 snapshot predates a confirmed revocation; #32 grant newer than a
    // stale snapshot; #33 inactive accounts confer nothing.
    assert!(!has("priya.shah", "crm:export"));
    assert!(!has("maria.rossi", "hr:view"));
    assert!(!has("dan.reyes", "hr:view"));
    assert!(!has("svc-legacy-payroll", "db:read"));
}

#[test]
fn replays_redeliveries_and_the_orphan_confirmation_are_counted() {
    let r = reconcile_json(&samples(), &[]);
    let e = &r["events"];
    assert_eq!(e["read"], 111);
    assert_eq!(e["unique"], 107);
    assert_eq!(e["replays"], 4);
    assert_eq!(e["redeliveries"], 1);
    assert_eq!(e["after_as_of"], 0);
    assert_eq!(e["by_type"]["change.requested"], 20);
    assert_eq!(e["by_type"]["connector.heartbeat"], 42);
    let c = change(&r, "chg-crm-0202");
    assert_eq!(c["redeliveries"], 1);
    assert_eq!(
        c["requested_at"], "2026-11-20T07:00:00Z",
        "the first request"
    );

    let anomalies = r["anomalies"].as_array().unwrap();
    let orphans: Vec<&Value> = anomalies
        .iter()
        .filter(|a| a["kind"] == "orphan_event")
        .collect();
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0]["subject"], "chg-gh-0099");
    assert_eq!(
        orphans[0]["evidence"][0]["file"],
        "logs/sync-2026-11-20.jsonl"
    );
    assert_eq!(orphans[0]["evidence"][0]["line"], 7);
    assert!(r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["key"] != "chg-gh-0099"));
    let replayed: BTreeSet<u64> = anomalies
        .iter()
        .filter(|a| a["kind"] == "replay")
        .map(|a| a["evidence"][0]["line"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, BTreeSet::from([1, 2, 3, 4]));
}

#[test]
fn nested_group_path_of_ines_duarte_is_reported() {
    let r = reconcile_json(&samples(), &[]);
    let grant = r["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| {
            g["identity"] == "ines.duarte" && g["entitlement"] == "repo:payments-service:admin"
        })
        .expect("her admin grant is still effective");
    assert_eq!(grant["status"], "not_revoked");
    assert_eq!(
        grant["paths"],
        serde_json::json!([{"groups": ["sre-oncall", "sre", "platform-admins"]}]),
        "one route, three groups deep; the sre-oncall cycle adds nothing"
    );
    assert_eq!(grant["removal"], "chg-gh-0104");
    let text = stdout_of(syncproof(["reconcile"]).arg(samples()), 0);
    assert!(
        text.contains(
            "group sre-oncall → group sre → group platform-admins → repo:payments-service:admin"
        ),
        "{text}"
    );
}

#[test]
fn connector_silences_and_errors_match_the_logs() {
    let r = reconcile_json(&samples(), &[]);
    let got: BTreeMap<String, (String, String, u64)> = r["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                str_of(&c["id"]),
                (
                    str_of(&c["last_seen"]),
                    str_of(&c["silence"]),
                    c["errors"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<String, (String, String, u64)> = [
        ("crm", "2026-11-20T11:00:00Z", "1h", 2),
        ("github", "2026-11-20T11:30:00Z", "30m", 0),
        ("legacy-hr", "2026-11-18T21:00:00Z", "1d15h", 0),
        ("payments", "2026-11-20T11:45:00Z", "15m", 1),
    ]
    .iter()
    .map(|(id, seen, silence, errors)| ((*id).into(), ((*seen).into(), (*silence).into(), *errors)))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn snapshot_ages_are_measured_from_taken_at() {
    let r = reconcile_json(&samples(), &[]);
    let got: BTreeMap<String, (String, u64, u64)> = r["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                str_of(&s["application"]),
                (
                    str_of(&s["age"]),
                    s["accounts"].as_u64().unwrap(),
                    s["groups"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<String, (String, u64, u64)> = [
        ("crm-saas", "4h", 9, 0),
        ("github-org", "6h", 10, 5),
        ("legacy-hr", "36d10h", 4, 2),
        ("payments-db", "30m", 10, 2),
    ]
    .iter()
    .map(|(a, age, n, g)| ((*a).into(), ((*age).into(), *n, *g)))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn default_as_of_is_collected_at() {
    let r = reconcile_json(&samples(), &[]);
    assert_eq!(r["collected_at"], "2026-11-20T12:00:00Z");
    assert_eq!(r["as_of"], r["collected_at"]);
    let default = stdout_of(
        syncproof(["reconcile"])
            .arg(samples())
            .args(["--format", "json"]),
        0,
    );
    let explicit = stdout_of(
        syncproof(["reconcile"]).arg(samples()).args([
            "--format",
            "json",
            "--as-of",
            "2026-11-20T12:00:00Z",
        ]),
        0,
    );
    assert_eq!(default, explicit);
}

#[test]
fn earlier_as_of_leaves_out_later_events() {
    let r = reconcile_json(&samples(), &["--as-of", "2026-11-19T12:00:00Z"]);
    assert_eq!(r["as_of"], "2026-11-19T12:00:00Z");
    assert_eq!(r["events"]["read"], 111);
    assert!(r["events"]["after_as_of"].as_u64().unwrap() > 0);
    let keys: BTreeSet<String> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_of(&c["key"]))
        .collect();
    assert_eq!(keys, set(&["chg-hr-0401", "chg-pay-0001", "chg-gh-0101"]));
    // Confirmed at 12:10, ten minutes after this as-of: not yet.
    let c = change(&r, "chg-gh-0101");
    assert_eq!(c["status"], "pending");
    assert_eq!(c["pending_for"], "2h");
    assert_eq!(change(&r, "chg-hr-0401")["pending_for"], "16h");
}

#[test]
fn output_is_byte_identical_across_runs() {
    for format in ["json", "text"] {
        let run = || {
            stdout_of(
                syncproof(["reconcile"])
                    .arg(samples())
                    .args(["--format", format]),
                0,
            )
        };
        assert_eq!(run(), run(), "{format}");
    }
}

// ---- bad input -------------------------------------------------------------

/// Runs `reconcile` on `collection`, expects exit 2 and returns stderr.
fn refused(collection: &Path) -> String {
    refusal_of(syncproof(["reconcile"]).arg(collection))
}

#[test]
fn malformed_json_line_is_refused_with_file_and_line() {
    let (_d, c) = samples_copy();
    super::support::edit_line(&c.join(LOG19), 10, |_| "{not json".into());
    assert_names(
        &refused(&c),
        &["logs/sync-2026-11-19.jsonl:10", "not a JSON object"],
    );
}

#[test]
fn unknown_event_type_is_refused() {
    let (_d, c) = samples_copy();
    replace_in_line(
        &c.join(LOG19),
        30,
        "dev.syncproof.change.attempted",
        "dev.syncproof.change.bogus",
    );
    assert_names(
        &refused(&c),
        &[
            "logs/sync-2026-11-19.jsonl:30",
            "unknown event type `dev.syncproof.change.bogus`",
        ],
    );
}

#[test]
fn bad_timestamp_is_refused() {
    let (_d, c) = samples_copy();
    replace_in_line(
        &c.join(LOG19),
        20,
        "\"time\":\"2026-11-19T12:00:00Z\"",
        "\"time\":\"2026-11-19 12:00\"",
    );
    assert_names(
        &refused(&c),
        &[
            "logs/sync-2026-11-19.jsonl:20",
            "`time`",
            "is not an RFC 3339 timestamp",
        ],
    );
}

#[test]
fn missing_required_field_is_refused() {
    let (_d, c) = samples_copy();
    replace_in_line(&c.join(LOG19), 12, "\"identity\":\"erin.walsh\",", "");
    assert_names(
        &refused(&c),
        &["logs/sync-2026-11-19.jsonl:12", "missing field `identity`"],
    );
}

#[test]
fn unknown_application_is_refused() {
    let (_d, c) = samples_copy();
    replace_in_line(
        &c.join(LOG19),
        12,
        "\"application\":\"payments-db\"",
        "\"application\":\"nope-app\"",
    );
    assert_names(
        &refused(&c),
        &[
            "logs/sync-2026-11-19.jsonl:12",
            "unknown application `nope-app`",
        ],
    );
}

#[test]
fn identity_defined_twice_is_refused() {
    let (_d, c) = samples_copy();
    let path = c.join("desired/governance.yaml");
    let text = fs::read_to_string(&path).unwrap();
    let dup =
        "  - id: erin.walsh\n    display_name: Erin Walsh\n    kind: human\n    status: active\n";
    assert!(text.contains(dup));
    fs::write(&path, text.replacen(dup, &format!("{dup}{dup}"), 1)).unwrap();
    assert_names(
        &refused(&c),
        &[
            "desired/governance.yaml",
            "identities[",
            "`erin.walsh` is defined twice",
            "line 26",
        ],
    );
}

#[test]
fn unlisted_data_file_is_refused() {
    let (_d, c) = samples_copy();
    fs::write(c.join("logs/extra.jsonl"), "").unwrap();
    assert_names(
        &refused(&c),
        &["logs/extra.jsonl", "`collection.yaml` does not name"],
    );
}

#[test]
fn missing_named_file_is_refused() {
    let (_d, c) = samples_copy();
    fs::remove_file(c.join("logs/legacy-hr-2026-11-18.ndjson")).unwrap();
    assert_names(
        &refused(&c),
        &["logs/legacy-hr-2026-11-18.ndjson", "does not exist"],
    );
}

#[cfg(unix)]
#[test]
fn symlink_in_the_collection_is_refused() {
    let (d, c) = samples_copy();
    let outside = d.path().join("outside.txt");
    fs::write(&outside, "not part of the collection").unwrap();
    std::os::unix::fs::symlink(&outside, c.join("logs/notes.txt")).unwrap();
    assert_names(&refused(&c), &["logs/notes.txt", "symbolic link"]);
}

/// Three distinct problems in one log file.
fn three_bad_lines(c: &Path) {
    let log = c.join(LOG19);
    super::support::edit_line(&log, 10, |_| "{not json".into());
    replace_in_line(
        &log,
        20,
        "\"time\":\"2026-11-19T12:00:00Z\"",
        "\"time\":\"yesterday\"",
    );
    replace_in_line(
        &log,
        30,
        "dev.syncproof.change.attempted",
        "dev.syncproof.change.bogus",
    );
}

#[test]
fn every_bad_line_of_a_log_is_reported() {
    let (_d, c) = samples_copy();
    three_bad_lines(&c);
    assert_names(
        &refused(&c),
        &[
            "3 invalid records",
            "logs/sync-2026-11-19.jsonl:10",
            "logs/sync-2026-11-19.jsonl:20",
            "logs/sync-2026-11-19.jsonl:30",
        ],
    );
}

#[test]
fn quarantine_sets_bad_lines_aside_and_lists_them() {
    let (_d, c) = samples_copy();
    three_bad_lines(&c);
    let r = reconcile_json(&c, &["--quarantine"]);
    let rejected: Vec<(String, u64)> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (str_of(&x["file"]), x["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (LOG19.to_owned(), 10),
            (LOG19.to_owned(), 20),
            (LOG19.to_owned(), 30)
        ]
    );
    assert_eq!(r["events"]["read"], 108);

    syncproof(["reconcile"])
        .arg(&c)
        .arg("--quarantine")
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("quarantined log lines (3)")
                .and(predicate::str::contains("logs/sync-2026-11-19.jsonl:10: "))
                .and(predicate::str::contains("logs/sync-2026-11-19.jsonl:20: "))
                .and(predicate::str::contains("logs/sync-2026-11-19.jsonl:30: ")),
        )
        .stderr(predicate::str::contains(
            "3 sync-log line(s) were quarantined",
        ));
}
