//! SARIF 2.1.0: the findings as static-analysis results, for GitHub code
//! scanning (`github/codeql-action/upload-sarif`) and other SARIF consumers.
//!
//! Input: the [`Assessment`] and the control catalog. Output: one SARIF log
//! with one run. Each forbid policy is a rule (its `security-severity` is what
//! GitHub ranks alerts by); each finding is a result located at its first
//! evidence record, with the others as related locations. An excepted finding
//! carries an accepted external suppression, so it is visible but not an
//! open alert.
//!
//! Locations: `artifactLocation.uri` is `uri_base` followed by the evidence
//! file's path inside the collection. Give the collection directory as it
//! lies relative to the repository root (for example `samples/`) so that
//! code-scanning alerts point at the right file.
//!
//! Fingerprints: `partialFingerprints."syncproofFinding/v1"` is the SHA-256
//! of `policy_id NUL subject_id`, so the same finding keeps its alert across
//! runs while its facts (ages, counts) change.
//!
//! Spec: <https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html>.

use std::io::Write;

use serde::Serialize;

use super::assessment::{Assessment, PolicyResult};
use super::formats::{crosswalk_note, uri_path, write_json, FormatError};
use crate::ingest::model::SourceRef;
use crate::policy::controls::Catalog;
use crate::policy::findings::{Finding, Severity};

/// The `$schema` SARIF consumers expect.
const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The key of the stable per-finding fingerprint.
pub const FINGERPRINT_KEY: &str = "syncproofFinding/v1";
/// Where a result with no evidence record points: the collection manifest.
const FALLBACK_FILE: &str = "collection.yaml";

/// The root of a SARIF log.
#[derive(Serialize)]
struct Log<'a> {
    /// The schema URI.
    #[serde(rename = "$schema")]
    schema: &'static str,
    /// `2.1.0`.
    version: &'static str,
    /// One run.
    runs: Vec<Run<'a>>,
}

/// One run of the tool.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    /// The tool and its rules.
    tool: ToolComponent<'a>,
    /// The run finished (findings are not a failure to run).
    invocations: Vec<Invocation>,
    /// One per finding.
    results: Vec<SarifResult<'a>>,
    /// The collection, the instant and the policy pack digest.
    properties: RunProperties<'a>,
}

/// `tool`.
#[derive(Serialize)]
struct ToolComponent<'a> {
    /// The driver.
    driver: Driver<'a>,
}

/// `tool.driver`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver<'a> {
    /// `syncproof`.
    name: &'a str,
    /// The tool version.
    version: &'a str,
    /// Where to read about it.
    information_uri: &'static str,
    /// One per forbid policy.
    rules: Vec<Rule<'a>>,
}

/// A `reportingDescriptor`: one forbid policy.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule<'a> {
    /// The policy id.
    id: &'a str,
    /// PascalCase of the id.
    name: String,
    /// The title.
    short_description: Text,
    /// Title, scope, severity and controls.
    full_description: Text,
    /// The remediation.
    help: Help,
    /// The level its results get.
    default_configuration: Configuration,
    /// GitHub's severity, tags and precision.
    properties: RuleProperties,
}

/// `{ "text": ... }`.
#[derive(Serialize)]
struct Text {
    /// Plain text.
    text: String,
}

/// A rule's help in text and Markdown.
#[derive(Serialize)]
struct Help {
    /// Plain text.
    text: String,
    /// GitHub-flavoured Markdown.
    markdown: String,
}

/// `defaultConfiguration`.
#[derive(Serialize)]
struct Configuration {
    /// `error`, `warning` or `note`.
    level: &'static str,
}

/// A rule's property bag.
#[derive(Serialize)]
struct RuleProperties {
    /// GitHub code scanning's 0.0–10.0 score, as a string.
    #[serde(rename = "security-severity")]
    security_severity: &'static str,
    /// `security` and the control ids.
    tags: Vec<String>,
    /// Findings come from evaluated facts, not heuristics.
    precision: &'static str,
}

/// `invocations[]`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    /// Always true: a finding is a result, not a failed run.
    execution_successful: bool,
}

/// A run's property bag.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunProperties<'a> {
    /// The collection's name.
    collection: &'a str,
    /// The instant evaluated.
    as_of: &'a str,
    /// The `--fail-on` threshold.
    fail_on: Severity,
    /// SHA-256 over the policy pack.
    policy_set_sha256: &'a str,
}

/// One result: one finding.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    /// The policy id.
    rule_id: &'a str,
    /// Index of the rule in `tool.driver.rules`.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    /// From the severity.
    level: &'static str,
    /// Title, facts, controls.
    message: Text,
    /// The first evidence record.
    locations: Vec<Location>,
    /// The other evidence records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_locations: Vec<Location>,
    /// The stable identity of the finding.
    partial_fingerprints: Fingerprints,
    /// Present when an exception covers the finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressions: Option<Vec<Suppression>>,
    /// Subject, controls, severity.
    properties: ResultProperties<'a>,
}

/// `partialFingerprints`.
#[derive(Serialize)]
struct Fingerprints {
    /// SHA-256 hex of `policy_id NUL subject_id`.
    #[serde(rename = "syncproofFinding/v1")]
    finding: String,
}

/// A `location`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    /// Its index among the related locations.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<usize>,
    /// File and line.
    physical_location: PhysicalLocation,
}

/// A `physicalLocation`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    /// The file.
    artifact_location: ArtifactLocation,
    /// The line, when the record has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

/// An `artifactLocation`.
#[derive(Serialize)]
struct ArtifactLocation {
    /// `uri_base` + the path in the collection, percent-encoded.
    uri: String,
}

/// A `region`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    /// 1-based.
    start_line: u64,
}

/// A `suppression`: the live exception.
#[derive(Serialize)]
struct Suppression {
    /// Recorded outside the analysed files.
    kind: &'static str,
    /// Approved.
    status: &'static str,
    /// Justification, approver, expiry, exception id.
    justification: String,
}

/// A result's property bag.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultProperties<'a> {
    /// The subject id.
    subject: &'a str,
    /// The subject kind.
    subject_kind: &'static str,
    /// The controls claimed for this subject.
    controls: &'a [String],
    /// The severity.
    severity: Severity,
}

/// The SARIF level for a severity.
fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub code scanning's `security-severity` for a severity: over 9.0 is
/// critical, 7.0–8.9 high, 4.0–6.9 medium, 0.1–3.9 low.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// `not-revoked` → `NotRevoked`.
pub fn pascal_case(id: &str) -> String {
    id.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// The stable fingerprint of a finding: SHA-256 hex of `policy_id NUL
/// subject_id`.
pub fn fingerprint(f: &Finding) -> String {
    let mut name = Vec::with_capacity(f.policy_id.len() + f.subject.id.len() + 1);
    name.extend_from_slice(f.policy_id.as_bytes());
    name.push(0);
    name.extend_from_slice(f.subject.id.as_bytes());
    crate::ingest::digest::sha256_hex(&name)
}

/// `samples` / `samples/` / `./samples` / `.` → a prefix ending in `/` (or
/// empty), with `\` turned into `/`.
fn normalise_base(uri_base: &str) -> String {
    let mut base = uri_base.replace('\\', "/");
    while let Some(rest) = base.strip_prefix("./") {
        base = rest.to_owned();
    }
    if base == "." {
        base.clear();
    }
    if !base.is_empty() && !base.ends_with('/') {
        base.push('/');
    }
    base
}

/// A location for one evidence record.
fn location(base: &str, e: &SourceRef, id: Option<usize>) -> Location {
    Location {
        id,
        physical_location: PhysicalLocation {
            artifact_location: ArtifactLocation {
                uri: uri_path(&format!("{base}{}", e.file)),
            },
            region: (e.line > 0).then_some(Region { start_line: e.line }),
        },
    }
}

/// A rule for one forbid policy.
fn rule<'a>(p: &'a PolicyResult, catalog: &Catalog) -> Rule<'a> {
    let kinds: Vec<&str> = p.applies_to.iter().map(|k| k.as_str()).collect();
    let control_lines: Vec<String> = p
        .controls
        .iter()
        .map(|id| {
            let title = catalog.get(id).map(|c| c.title.as_str()).unwrap_or("");
            let framework = catalog
                .get(id)
                .and_then(|c| catalog.frameworks.get(&c.framework))
                .map(|f| f.title.as_str())
                .unwrap_or("");
            format!("{id} {title} [{framework}]{}", crosswalk_note(catalog, id))
        })
        .collect();
    let mut full = format!(
        "{} Severity {}; evaluated for each {} subject.",
        sentence(&p.title),
        p.severity,
        kinds.join(", ")
    );
    if !control_lines.is_empty() {
        full.push_str(&format!(" Controls: {}.", control_lines.join("; ")));
    }
    let mut markdown = format!("**Remediation.** {}\n", p.remediation);
    if !control_lines.is_empty() {
        markdown.push_str("\n**Controls**\n\n");
        for line in &control_lines {
            markdown.push_str(&format!("- {line}\n"));
        }
    }
    markdown.push_str(&format!("\nPolicy source: `{}`.\n", p.source));
    let mut tags = vec!["security".to_owned()];
    tags.extend(p.controls.iter().cloned());
    Rule {
        id: &p.id,
        name: pascal_case(&p.id),
        short_description: Text {
            text: p.title.clone(),
        },
        full_description: Text { text: full },
        help: Help {
            text: p.remediation.clone(),
            markdown,
        },
        default_configuration: Configuration {
            level: level(p.severity),
        },
        properties: RuleProperties {
            security_severity: security_severity(p.severity),
            tags,
            precision: "high",
        },
    }
}

/// `text` with a final period.
fn sentence(text: &str) -> String {
    if text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// A result for one finding.
fn result<'a>(f: &'a Finding, rule_index: Option<usize>, base: &str) -> SarifResult<'a> {
    let mut text = format!("{}: {}", f.title, sentence(&f.facts));
    if !f.controls.is_empty() {
        text.push_str(&format!(" Controls: {}.", f.controls.join(", ")));
    }
    let (first, rest) = match f.evidence.split_first() {
        Some((first, rest)) => (location(base, first, None), rest),
        None => (
            location(
                base,
                &SourceRef {
                    file: FALLBACK_FILE.into(),
                    line: 0,
                    sha256: Default::default(),
                },
                None,
            ),
            &[][..],
        ),
    };
    let related = rest
        .iter()
        .enumerate()
        .map(|(i, e)| location(base, e, Some(i + 1)))
        .collect();
    let suppressions = f.exception.as_ref().map(|x| {
        let ticket = x
            .ticket
            .as_deref()
            .map(|t| format!(", ticket {t}"))
            .unwrap_or_default();
        vec![Suppression {
            kind: "external",
            status: "accepted",
            justification: format!(
                "{} (exception {}, approved by {}, expires {}{ticket})",
                x.justification, x.id, x.approver, x.expires_at
            ),
        }]
    });
    SarifResult {
        rule_id: &f.policy_id,
        rule_index,
        level: level(f.severity),
        message: Text { text },
        locations: vec![first],
        related_locations: related,
        partial_fingerprints: Fingerprints {
            finding: fingerprint(f),
        },
        suppressions,
        properties: ResultProperties {
            subject: &f.subject.id,
            subject_kind: f.subject.kind.as_str(),
            controls: &f.controls,
            severity: f.severity,
        },
    }
}

/// Writes the SARIF log of an assessment. `uri_base` is prefixed to every
/// evidence path (see the module docs).
pub fn render(
    a: &Assessment,
    catalog: &Catalog,
    uri_base: &str,
    out: &mut impl Write,
) -> Result<(), FormatError> {
    let base = normalise_base(uri_base);
    let rules: Vec<Rule<'_>> = a.policies.iter().map(|p| rule(p, catalog)).collect();
    let results = a
        .findings
        .iter()
        .map(|f| {
            let index = a.policies.iter().position(|p| p.id == f.policy_id);
            result(f, index, &base)
        })
        .collect();
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: ToolComponent {
                driver: Driver {
                    name: &a.tool.name,
                    version: &a.tool.version,
                    information_uri: "https://syncproof.dev",
                    rules,
                },
            },
            invocations: vec![Invocation {
                execution_successful: true,
            }],
            results,
            properties: RunProperties {
                collection: &a.collection,
                as_of: &a.as_of,
                fail_on: a.fail_on,
                policy_set_sha256: &a.policy_set_sha256,
            },
        }],
    };
    write_json("SARIF", &log, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_of_policy_ids() {
        assert_eq!(pascal_case("not-revoked"), "NotRevoked");
        assert_eq!(pascal_case("sync-latency"), "SyncLatency");
        assert_eq!(pascal_case("x"), "X");
    }

    #[test]
    fn uri_base_is_normalised() {
        assert_eq!(normalise_base(""), "");
        assert_eq!(normalise_base("."), "");
        assert_eq!(normalise_base("./samples"), "samples/");
        assert_eq!(normalise_base("samples/"), "samples/");
        assert_eq!(normalise_base("a\\b"), "a/b/");
    }

    #[test]
    fn levels_and_scores_follow_severity() {
        assert_eq!(level(Severity::Critical), "error");
        assert_eq!(level(Severity::High), "error");
        assert_eq!(level(Severity::Medium), "warning");
        assert_eq!(level(Severity::Low), "note");
        assert_eq!(security_severity(Severity::Critical), "9.5");
        assert_eq!(security_severity(Severity::Low), "3.0");
    }
}
