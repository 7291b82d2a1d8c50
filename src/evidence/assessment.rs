//! The assessment: the one findings model every output is made from —
//! `check --format json`, `findings.json` in a pack, the reports, SARIF,
//! JUnit and OSCAL. No format computes findings of its own.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::policy::exceptions::ExceptionReport;
use crate::policy::findings::{Evaluation, Finding, Severity, SubjectKind};
use crate::policy::CompiledPack;
use crate::reconcile::Reconciled;
use crate::time::format_timestamp;

/// The tool that produced an output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tool {
    /// `syncproof`.
    pub name: String,
    /// The crate version.
    pub version: String,
}

impl Tool {
    /// This build of syncproof.
    pub fn current() -> Self {
        Tool {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Pass or fail against `--fail-on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No finding at or above the threshold (excepted findings aside).
    Pass,
    /// Some finding at or above the threshold.
    Fail,
}

/// Counts of findings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// All findings, excepted ones included.
    pub total: usize,
    /// Findings at or above the threshold and not excepted: these fail the gate.
    pub failing: usize,
    /// Findings covered by a live exception.
    pub excepted: usize,
    /// Not-excepted findings by severity.
    pub by_severity: BTreeMap<Severity, usize>,
    /// Not-excepted findings by policy id.
    pub by_policy: BTreeMap<String, usize>,
    /// Not-excepted findings by control id.
    pub by_control: BTreeMap<String, usize>,
}

/// One policy's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyResult {
    /// `@id`.
    pub id: String,
    /// `@title`.
    pub title: String,
    /// `@severity`.
    pub severity: Severity,
    /// `@controls`.
    pub controls: Vec<String>,
    /// `@remediation`.
    pub remediation: String,
    /// The subject kinds it applies to.
    pub applies_to: Vec<SubjectKind>,
    /// Subjects it evaluated.
    pub evaluated: u64,
    /// Findings it produced (excepted included).
    pub failed: u64,
    /// Of which excepted.
    pub excepted: u64,
    /// Its file in the pack and the line it starts on.
    pub source: String,
}

/// The findings model.
#[derive(Clone, Debug, Serialize)]
pub struct Assessment {
    /// The tool.
    pub tool: Tool,
    /// The collection's name.
    pub collection: String,
    /// The instant evaluated.
    pub as_of: String,
    /// The threshold.
    pub fail_on: Severity,
    /// The verdict.
    pub verdict: Verdict,
    /// SHA-256 over the policy pack (see [`policy_set_digest`]).
    pub policy_set_sha256: String,
    /// Counts.
    pub counts: Counts,
    /// Subjects evaluated, by kind.
    pub subjects: BTreeMap<SubjectKind, u64>,
    /// Every forbid policy's result, by id.
    pub policies: Vec<PolicyResult>,
    /// Every finding, most severe first.
    pub findings: Vec<Finding>,
    /// Every exception and where it stands.
    pub exceptions: Vec<ExceptionReport>,
}

/// The digest that names a policy pack: SHA-256 over, for each file sorted by
/// name, `name NUL sha256-hex(text) LF`.
pub fn policy_set_digest(files: &BTreeMap<String, String>) -> String {
    let mut listing = String::new();
    for (name, text) in files {
        listing.push_str(name);
        listing.push('\0');
        listing.push_str(&crate::ingest::digest::sha256_hex(text.as_bytes()));
        listing.push('\n');
    }
    crate::ingest::digest::sha256_hex(listing.as_bytes())
}

impl Assessment {
    /// Builds the assessment from an evaluation.
    pub fn new(
        r: &Reconciled,
        pack: &CompiledPack,
        eval: &Evaluation,
        exceptions: Vec<ExceptionReport>,
        fail_on: Severity,
    ) -> Self {
        let mut counts = Counts {
            total: eval.findings.len(),
            ..Counts::default()
        };
        for s in Severity::DESCENDING {
            counts.by_severity.insert(s, 0);
        }
        let mut excepted_by_policy: BTreeMap<&str, u64> = BTreeMap::new();
        for f in &eval.findings {
            if f.is_excepted() {
                counts.excepted += 1;
                *excepted_by_policy.entry(f.policy_id.as_str()).or_default() += 1;
                continue;
            }
            if f.severity >= fail_on {
                counts.failing += 1;
            }
            *counts.by_severity.entry(f.severity).or_default() += 1;
            *counts.by_policy.entry(f.policy_id.clone()).or_default() += 1;
            for c in &f.controls {
                *counts.by_control.entry(c.clone()).or_default() += 1;
            }
        }
        let policies = pack
            .meta
            .values()
            .filter_map(|m| {
                let severity = m.severity?;
                let tally = eval.policies.get(&m.id).cloned().unwrap_or_default();
                Some(PolicyResult {
                    id: m.id.clone(),
                    title: m.title.clone(),
                    severity,
                    controls: m.controls.clone(),
                    remediation: m.remediation.clone(),
                    applies_to: m.actions.clone(),
                    evaluated: tally.evaluated,
                    failed: tally.failed,
                    excepted: excepted_by_policy.get(m.id.as_str()).copied().unwrap_or(0),
                    source: format!("{}:{}", m.file, m.line),
                })
            })
            .collect();
        Assessment {
            tool: Tool::current(),
            collection: r.collection.clone(),
            as_of: format_timestamp(&r.as_of),
            fail_on,
            verdict: if counts.failing > 0 {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            policy_set_sha256: policy_set_digest(&pack.files),
            counts,
            subjects: eval.subjects.clone(),
            policies,
            findings: eval.findings.clone(),
            exceptions,
        }
    }

    /// The assessment as pretty JSON with a final newline (`findings.json`,
    /// `check --format json`), written to `out` as it is made instead of
    /// held whole: it is 72 MB on W10.
    pub fn write_json(&self, out: &mut dyn std::io::Write) -> Result<(), serde_json::Error> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        out.write_all(b"\n").map_err(serde_json::Error::io)
    }
}
