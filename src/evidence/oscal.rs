//! OSCAL Assessment Results 1.1.3 (JSON): the assessment in NIST's format,
//! for GRC platforms and `compliance-trestle` pipelines.
//!
//! Input: the [`Assessment`], the [`Reconciled`] state (input files with
//! digests, snapshot times, `collected_at`), the control catalog and,
//! optionally, the tier targets. Output: one `assessment-results` document
//! with one result:
//!
//! - `reviewed-controls`: every control some forbid policy claims, as an
//!   OSCAL control id (see [`control_token`]);
//! - `observations`: one per input file (method `EXAMINE`), with its path
//!   and SHA-256; a snapshot's observation is collected when the snapshot was
//!   taken and, given the tiers, `expires` when its tier's
//!   `max_snapshot_age` runs out;
//! - `risks`: one per finding, `open`, or `deviation-approved` when an
//!   exception covers it (its expiry is the risk's `deadline`);
//! - `findings`: one per reviewed control, targeting the control's objective
//!   (`<control-id>_obj`): `not-satisfied` when any finding claims the
//!   control (excepted ones included: an approved deviation is still a
//!   deviation), `satisfied` otherwise, linked to its risks and observations.
//!
//! Every uuid is a name-based UUID v5 (RFC 4122): the document's from the
//! collection, instant, policy pack and input digests, every other one from
//! the document's uuid and a stable name. No clock, no randomness.
//!
//! Model reference: <https://pages.nist.gov/OSCAL/resources/concepts/layer/assessment/assessment-results/>.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::Serialize;
use uuid::Uuid;

use super::assessment::Assessment;
use super::formats::{crosswalk_note, uri_path, write_json, FormatError};
use crate::ingest::model::TierTargets;
use crate::policy::controls::Catalog;
use crate::policy::findings::Finding;
use crate::reconcile::model::SnapshotFreshness;
use crate::reconcile::Reconciled;
use crate::time::{format_timestamp, Timestamp};
use crate::FastMap;

/// The OSCAL version the document follows.
pub const OSCAL_VERSION: &str = "1.1.3";
/// The namespace of syncproof's own `props`.
const NS: &str = "https://syncproof.dev/ns/oscal";
/// The assessment plan the results refer to (syncproof's policy pack, which
/// has no OSCAL plan document of its own).
const IMPORT_AP: &str = "#syncproof-assessment-plan";

/// The document root.
#[derive(Serialize)]
struct Document {
    /// The assessment results.
    #[serde(rename = "assessment-results")]
    assessment_results: AssessmentResults,
}

/// `assessment-results`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct AssessmentResults {
    /// Deterministic uuid.
    uuid: Uuid,
    /// Title, dates, versions.
    metadata: Metadata,
    /// The plan.
    import_ap: ImportAp,
    /// One result.
    results: Vec<OscalResult>,
}

/// `metadata`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Metadata {
    /// Title.
    title: String,
    /// `--as-of`, never the wall clock.
    last_modified: String,
    /// The tool version.
    version: String,
    /// `1.1.3`.
    oscal_version: &'static str,
    /// Tool name.
    props: Vec<Prop>,
}

/// `import-ap`.
#[derive(Serialize)]
struct ImportAp {
    /// Reference to the plan.
    href: &'static str,
    /// What the plan is.
    remarks: &'static str,
}

/// A `prop`.
#[derive(Serialize)]
struct Prop {
    /// Name (a token).
    name: &'static str,
    /// Namespace, for names OSCAL does not define.
    #[serde(skip_serializing_if = "Option::is_none")]
    ns: Option<&'static str>,
    /// Value.
    value: String,
}

impl Prop {
    /// A prop in syncproof's namespace.
    fn ours(name: &'static str, value: impl Into<String>) -> Self {
        Prop {
            name,
            ns: Some(NS),
            value: value.into(),
        }
    }

    /// A prop OSCAL defines.
    fn oscal(name: &'static str, value: impl Into<String>) -> Self {
        Prop {
            name,
            ns: None,
            value: value.into(),
        }
    }
}

/// One `result`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct OscalResult {
    /// Deterministic uuid.
    uuid: Uuid,
    /// Title.
    title: String,
    /// What was assessed.
    description: String,
    /// Earliest evidence time.
    start: String,
    /// `--as-of`.
    end: String,
    /// Verdict, threshold, policy pack digest.
    props: Vec<Prop>,
    /// The controls.
    reviewed_controls: ReviewedControls,
    /// One per input file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    observations: Vec<Observation>,
    /// One per finding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    risks: Vec<Risk>,
    /// One per control.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    findings: Vec<OscalFinding>,
}

/// `reviewed-controls`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ReviewedControls {
    /// One selection.
    control_selections: Vec<ControlSelection>,
}

/// A `control-selection`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ControlSelection {
    /// What the selection is.
    description: String,
    /// The controls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    include_controls: Vec<SelectControl>,
}

/// A `select-control-by-id`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct SelectControl {
    /// OSCAL control id.
    control_id: String,
}

/// An `observation`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Observation {
    /// Deterministic uuid.
    uuid: Uuid,
    /// Title.
    title: String,
    /// The file, its kind, size and digest.
    description: String,
    /// Kind and digest.
    props: Vec<Prop>,
    /// `EXAMINE`.
    methods: Vec<&'static str>,
    /// The file.
    relevant_evidence: Vec<RelevantEvidence>,
    /// When the evidence was collected.
    collected: String,
    /// When a snapshot is too old to rely on.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
}

/// A `relevant-evidence`.
#[derive(Serialize)]
struct RelevantEvidence {
    /// The file's path in the collection.
    href: String,
    /// What it is.
    description: String,
    /// Its digest.
    props: Vec<Prop>,
}

/// A `risk`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Risk {
    /// Deterministic uuid.
    uuid: Uuid,
    /// Policy title and subject.
    title: String,
    /// The facts, and the exception when one covers it (a risk has no
    /// `remarks` in OSCAL 1.1.3).
    description: String,
    /// What is at stake and the remediation.
    statement: String,
    /// Policy, severity, subject.
    props: Vec<Prop>,
    /// `open` or `deviation-approved`.
    status: &'static str,
    /// The exception's expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<String>,
    /// The files behind it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_observations: Vec<RelatedObservation>,
}

/// A `finding`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct OscalFinding {
    /// Deterministic uuid.
    uuid: Uuid,
    /// Control id and title.
    title: String,
    /// What was found.
    description: String,
    /// The control's id as its framework writes it, and the framework.
    props: Vec<Prop>,
    /// The objective and its state.
    target: Target,
    /// The files behind it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_observations: Vec<RelatedObservation>,
    /// The findings (risks) that claim the control.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_risks: Vec<RelatedRisk>,
}

/// A finding's `target`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Target {
    /// `objective-id`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `<control-id>_obj`.
    target_id: String,
    /// Satisfied or not.
    status: Status,
}

/// An objective's `status`.
#[derive(Serialize)]
struct Status {
    /// `satisfied` or `not-satisfied`.
    state: &'static str,
    /// `pass` or `fail`.
    reason: &'static str,
    /// Exceptions, when all findings are excepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    remarks: Option<String>,
}

/// `related-observations[]`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RelatedObservation {
    /// The observation.
    observation_uuid: Uuid,
}

/// `related-risks[]`.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RelatedRisk {
    /// The risk.
    risk_uuid: Uuid,
}

/// An OSCAL control id (a token, `^(\p{L}|_)(\p{L}|\p{N}|[.\-_])*$`) for a
/// control id as its framework writes it, in the form NIST's OSCAL catalogs
/// use: lowercase, enhancements after a dot. `AC-2(3)` → `ac-2.3`,
/// `PR.AA-05` → `pr.aa-05`, `NHI1:2025` → `nhi1_2025`. The original id is
/// kept in the finding's `label` prop.
pub fn control_token(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '(' => out.push('.'),
            ')' => {}
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') => {
                out.push(c.to_ascii_lowercase());
            }
            _ => out.push('_'),
        }
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// A name-based uuid under `namespace` from NUL-joined parts.
fn uuid_of(namespace: &Uuid, parts: &[&str]) -> Uuid {
    Uuid::new_v5(namespace, parts.join("\0").as_bytes())
}

/// Adds a span to an instant, if it fits.
fn add_span(t: &Timestamp, span: crate::time::Span) -> Option<Timestamp> {
    t.checked_add_signed(chrono::Duration::milliseconds(span.as_millis()))
}

/// Writes the OSCAL Assessment Results of an assessment.
pub fn render(
    a: &Assessment,
    r: &Reconciled,
    catalog: &Catalog,
    tiers: Option<&BTreeMap<String, TierTargets>>,
    out: &mut impl Write,
) -> Result<(), FormatError> {
    write_json("OSCAL", &document(a, r, catalog, tiers), out)
}

/// Builds the document.
fn document(
    a: &Assessment,
    r: &Reconciled,
    catalog: &Catalog,
    tiers: Option<&BTreeMap<String, TierTargets>>,
) -> Document {
    let root = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://syncproof.dev/ns/oscal/assessment-results",
    );
    let mut name = vec![
        a.collection.as_str(),
        a.as_of.as_str(),
        a.policy_set_sha256.as_str(),
        a.tool.version.as_str(),
    ];
    for input in &r.inputs {
        name.push(&input.path);
        name.push(&input.sha256);
    }
    let doc_uuid = uuid_of(&root, &name);

    let observations = observations(&doc_uuid, r, tiers);
    // Probed once per piece of evidence of every finding: hashed, not
    // ordered (the sets built from it are ordered).
    let obs_by_path: FastMap<&str, Uuid> = r
        .inputs
        .iter()
        .zip(&observations)
        .map(|(i, o)| (i.path.as_str(), o.uuid))
        .collect();
    let related = |f: &Finding| -> BTreeSet<Uuid> {
        f.evidence
            .iter()
            .filter_map(|e| obs_by_path.get(e.file.as_ref()).copied())
            .collect()
    };

    let risks: Vec<(Uuid, &Finding, Risk)> = a
        .findings
        .iter()
        .map(|f| {
            let uuid = uuid_of(&doc_uuid, &["risk", &f.policy_id, &f.subject.id]);
            (uuid, f, risk(uuid, f, related(f)))
        })
        .collect();

    let controls: BTreeSet<&str> = a
        .policies
        .iter()
        .flat_map(|p| p.controls.iter().map(String::as_str))
        .collect();
    let all_observations: Vec<RelatedObservation> = observations
        .iter()
        .map(|o| RelatedObservation {
            observation_uuid: o.uuid,
        })
        .collect();
    let findings = controls
        .iter()
        .map(|id| {
            let claimed: Vec<&(Uuid, &Finding, Risk)> = risks
                .iter()
                .filter(|(_, f, _)| f.controls.iter().any(|c| c == id))
                .collect();
            let policies: BTreeSet<&str> = a
                .policies
                .iter()
                .filter(|p| p.controls.iter().any(|c| c == id))
                .map(|p| p.id.as_str())
                .collect();
            control_finding(&doc_uuid, id, catalog, &claimed, &policies, a, |fs| {
                if fs.is_empty() {
                    // Satisfied: every input was examined and nothing failed.
                    all_observations
                        .iter()
                        .map(|o| RelatedObservation {
                            observation_uuid: o.observation_uuid,
                        })
                        .collect()
                } else {
                    // Each risk lists its finding's observations already.
                    fs.iter()
                        .flat_map(|(_, _, risk)| &risk.related_observations)
                        .map(|o| o.observation_uuid)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .map(|observation_uuid| RelatedObservation { observation_uuid })
                        .collect()
                }
            })
        })
        .collect();

    let start = r
        .snapshots
        .iter()
        .map(|s| s.taken_at)
        .chain([r.collected_at, r.as_of])
        .min()
        .unwrap_or(r.as_of);
    let subjects: u64 = a.subjects.values().sum();
    let result = OscalResult {
        uuid: uuid_of(&doc_uuid, &["result"]),
        title: format!("syncproof assessment of {}", a.collection),
        description: format!(
            "{} forbid policies evaluated over {subjects} subjects of `{}` as of {}: {} finding(s), {} failing at or above `{}`, {} excepted.",
            a.policies.len(),
            a.collection,
            a.as_of,
            a.counts.total,
            a.counts.failing,
            a.fail_on,
            a.counts.excepted
        ),
        start: format_timestamp(&start),
        end: a.as_of.clone(),
        props: vec![
            Prop::ours("verdict", format!("{:?}", a.verdict).to_lowercase()),
            Prop::ours("fail-on", a.fail_on.as_str()),
            Prop::ours("policy-set-sha256", a.policy_set_sha256.clone()),
        ],
        reviewed_controls: ReviewedControls {
            control_selections: vec![ControlSelection {
                description: "Every control claimed by a forbid policy of the pack.".to_owned(),
                include_controls: controls
                    .iter()
                    .map(|id| SelectControl {
                        control_id: control_token(id),
                    })
                    .collect(),
            }],
        },
        observations,
        risks: risks.into_iter().map(|(_, _, risk)| risk).collect(),
        findings,
    };
    Document {
        assessment_results: AssessmentResults {
            uuid: doc_uuid,
            metadata: Metadata {
                title: format!("syncproof assessment results: {}", a.collection),
                last_modified: a.as_of.clone(),
                version: a.tool.version.clone(),
                oscal_version: OSCAL_VERSION,
                props: vec![Prop::ours("tool", a.tool.name.clone())],
            },
            import_ap: ImportAp {
                href: IMPORT_AP,
                remarks: "The plan is syncproof's policy pack, named by the result's `policy-set-sha256` prop.",
            },
            results: vec![result],
        },
    }
}

/// One observation per input file.
fn observations(
    doc_uuid: &Uuid,
    r: &Reconciled,
    tiers: Option<&BTreeMap<String, TierTargets>>,
) -> Vec<Observation> {
    // Each file's snapshot and each application's tier, looked up once per
    // input: searching the lists instead took time in inputs × snapshots
    // (seconds at 20,000 applications). The first holder of a file wins, as
    // a search in list order would find it.
    let mut snapshot_of: FastMap<&str, &SnapshotFreshness> = FastMap::default();
    for s in &r.snapshots {
        for f in &s.files {
            snapshot_of.entry(f.as_str()).or_insert(s);
        }
    }
    let tier_of = r.tier_by_application();
    r.inputs
        .iter()
        .map(|input| {
            let snapshot = snapshot_of.get(input.path.as_str()).copied();
            let collected = snapshot.map(|s| s.taken_at).unwrap_or(r.collected_at);
            let expires = snapshot.and_then(|s| {
                let tier = tier_of.get(s.application.as_str())?;
                let targets = tiers?.get(*tier)?;
                add_span(&s.taken_at, targets.max_snapshot_age)
            });
            let what = match snapshot {
                Some(s) => format!("{} snapshot of `{}`", s.format, s.application),
                None => input.kind.replace('_', " "),
            };
            Observation {
                uuid: uuid_of(doc_uuid, &["observation", &input.path, &input.sha256]),
                title: format!("Examined `{}`", input.path),
                description: format!(
                    "{what}: `{}`, {} bytes, SHA-256 {}.",
                    input.path, input.size, input.sha256
                ),
                props: vec![Prop::ours("input-kind", input.kind.clone())],
                methods: vec!["EXAMINE"],
                relevant_evidence: vec![RelevantEvidence {
                    href: uri_path(&input.path),
                    description: format!("`{}` in the collection", input.path),
                    props: vec![Prop::ours("sha256", input.sha256.clone())],
                }],
                collected: format_timestamp(&collected),
                expires: expires.map(|t| format_timestamp(&t)),
            }
        })
        .collect()
}

/// One risk per finding.
fn risk(uuid: Uuid, f: &Finding, observations: BTreeSet<Uuid>) -> Risk {
    let (status, deadline, description) = match &f.exception {
        Some(x) => (
            "deviation-approved",
            crate::time::parse_timestamp(&x.expires_at)
                .ok()
                .map(|t| format_timestamp(&t)),
            format!(
                "{}. Excepted by {}: {} (approved by {}, expires {}).",
                f.facts.trim_end_matches('.'),
                x.id,
                x.justification,
                x.approver,
                x.expires_at
            ),
        ),
        None => ("open", None, f.facts.clone()),
    };
    let mut props = vec![
        Prop::ours("policy-id", f.policy_id.clone()),
        Prop::ours("severity", f.severity.as_str()),
        Prop::ours("subject-id", f.subject.id.clone()),
    ];
    if let Some(x) = &f.exception {
        props.push(Prop::ours("exception-id", x.id.clone()));
        props.push(Prop::ours("exception-approver", x.approver.clone()));
        if let Some(ticket) = &x.ticket {
            props.push(Prop::ours("exception-ticket", ticket.clone()));
        }
    }
    Risk {
        uuid,
        title: format!("{}: {}", f.title, f.subject.id),
        description,
        statement: format!(
            "{} ({} severity, controls {}). Remediation: {}",
            f.title,
            f.severity,
            if f.controls.is_empty() {
                "none".to_owned()
            } else {
                f.controls.join(", ")
            },
            f.remediation
        ),
        props,
        status,
        deadline,
        related_observations: observations
            .into_iter()
            .map(|observation_uuid| RelatedObservation { observation_uuid })
            .collect(),
    }
}

/// One finding per reviewed control.
fn control_finding(
    doc_uuid: &Uuid,
    id: &str,
    catalog: &Catalog,
    claimed: &[&(Uuid, &Finding, Risk)],
    policies: &BTreeSet<&str>,
    a: &Assessment,
    observations: impl Fn(&[&(Uuid, &Finding, Risk)]) -> Vec<RelatedObservation>,
) -> OscalFinding {
    let token = control_token(id);
    let control = catalog.get(id);
    let title = control.map(|c| c.title.as_str()).unwrap_or("");
    let open = claimed.iter().filter(|(_, f, _)| !f.is_excepted()).count();
    let excepted = claimed.len() - open;
    let policy_list = policies.iter().copied().collect::<Vec<_>>().join(", ");
    let evaluated: u64 = a
        .policies
        .iter()
        .filter(|p| policies.contains(p.id.as_str()))
        .map(|p| p.evaluated)
        .sum();
    let description = if claimed.is_empty() {
        format!(
            "No finding claims {id}: policies {policy_list} found nothing in {evaluated} subject evaluation(s)."
        )
    } else {
        format!(
            "{} finding(s) claim {id} ({open} open, {excepted} excepted) from policies {policy_list}, over {evaluated} subject evaluation(s).",
            claimed.len()
        )
    };
    let mut props = vec![Prop::oscal("label", id)];
    if let Some(c) = control {
        props.push(Prop::ours("framework", c.framework.clone()));
        for old in &c.csf_1_1 {
            props.push(Prop::ours("csf-1.1", old.clone()));
        }
    }
    let status = if claimed.is_empty() {
        Status {
            state: "satisfied",
            reason: "pass",
            remarks: None,
        }
    } else {
        Status {
            state: "not-satisfied",
            reason: "fail",
            remarks: (open == 0).then(|| {
                format!("every finding that claims {id} is covered by an approved exception")
            }),
        }
    };
    OscalFinding {
        uuid: uuid_of(doc_uuid, &["finding", id]),
        title: format!("{id} {title}{}", crosswalk_note(catalog, id))
            .trim_end()
            .to_owned(),
        description,
        props,
        target: Target {
            kind: "objective-id",
            target_id: format!("{token}_obj"),
            status,
        },
        related_observations: observations(claimed),
        related_risks: claimed
            .iter()
            .map(|(risk_uuid, _, _)| RelatedRisk {
                risk_uuid: *risk_uuid,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ids_become_oscal_tokens() {
        assert_eq!(control_token("AC-2(3)"), "ac-2.3");
        assert_eq!(control_token("AC-2"), "ac-2");
        assert_eq!(control_token("PR.AA-05"), "pr.aa-05");
        assert_eq!(control_token("NHI1:2025"), "nhi1_2025");
        assert_eq!(control_token("1X"), "_1x");
    }

    #[test]
    fn uuids_are_name_based_v5() {
        let ns = Uuid::NAMESPACE_URL;
        let a = uuid_of(&ns, &["risk", "p", "s"]);
        assert_eq!(a, uuid_of(&ns, &["risk", "p", "s"]));
        assert_ne!(a, uuid_of(&ns, &["risk", "p", "t"]));
        assert_eq!(a.get_version_num(), 5);
    }
}
