//! The terminal / CI-log rendering of an assessment: a one-line verdict, then
//! findings grouped by severity and policy, each with its subject, the facts
//! that decided it, its controls and where its evidence is.

use std::io::{self, Write};

use super::assessment::{Assessment, Verdict};
use crate::policy::findings::{Finding, Severity};

/// The one-line verdict.
pub fn verdict_line(a: &Assessment) -> String {
    let subjects: u64 = a.subjects.values().sum();
    let by_sev = Severity::DESCENDING
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                a.counts.by_severity.get(s).copied().unwrap_or(0),
                s
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let excepted = if a.counts.excepted > 0 {
        format!(", {} excepted", a.counts.excepted)
    } else {
        String::new()
    };
    match a.verdict {
        Verdict::Fail => format!(
            "FAIL: {} finding(s) at or above `{}` ({by_sev}{excepted}); {subjects} subjects evaluated as of {}",
            a.counts.failing, a.fail_on, a.as_of
        ),
        Verdict::Pass => format!(
            "PASS: no finding at or above `{}` ({by_sev}{excepted}); {subjects} subjects evaluated as of {}",
            a.fail_on, a.as_of
        ),
    }
}

/// Writes the text report.
pub fn render(a: &Assessment, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", verdict_line(a))?;
    for severity in Severity::DESCENDING {
        let group: Vec<&Finding> = a
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if group.is_empty() {
            continue;
        }
        writeln!(
            out,
            "\n{} ({})",
            severity.as_str().to_uppercase(),
            group.len()
        )?;
        let mut i = 0;
        while i < group.len() {
            let policy = &group[i].policy_id;
            let same: Vec<&&Finding> = group[i..]
                .iter()
                .take_while(|f| &f.policy_id == policy)
                .collect();
            writeln!(out, "  {policy}: {} ({})", group[i].title, same.len())?;
            for f in &same {
                let mark = if f.is_excepted() { " [excepted]" } else { "" };
                writeln!(out, "    - {}{mark}", f.subject.id)?;
                writeln!(out, "      {}", f.facts)?;
                if !f.controls.is_empty() {
                    writeln!(out, "      controls: {}", f.controls.join(", "))?;
                }
                if !f.evidence.is_empty() {
                    let ev: Vec<String> = f.evidence.iter().map(|e| e.location()).collect();
                    writeln!(out, "      evidence: {}", ev.join(", "))?;
                }
                if let Some(x) = &f.exception {
                    writeln!(
                        out,
                        "      excepted by `{}` (approved by {}, expires {}): {}",
                        x.id, x.approver, x.expires_at, x.justification
                    )?;
                }
            }
            i += same.len();
        }
    }
    if !a.exceptions.is_empty() {
        writeln!(out, "\nEXCEPTIONS ({})", a.exceptions.len())?;
        for x in &a.exceptions {
            let status = serde_json::to_value(x.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            writeln!(
                out,
                "  {} [{status}] {} ({}:{}): {}",
                x.exception.id, x.exception.policy, x.exception.file, x.exception.line, x.detail
            )?;
        }
    }
    Ok(())
}
