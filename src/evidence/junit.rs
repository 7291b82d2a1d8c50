//! JUnit XML: the findings as a test report, for CI systems that show test
//! results (GitLab `artifacts:reports:junit`, Jenkins `junit`, Azure DevOps,
//! GitHub test-report actions).
//!
//! Input: the [`Assessment`] and the [`Evaluation`] it came from, made with
//! `keep_subjects: true`, because passing subjects are test cases too.
//! Output: one `<testsuites>`, one `<testsuite>` per forbid policy, and one
//! `<testcase>` per subject the policy evaluated (every evaluated subject of
//! the kinds its scope covers). A subject with a finding fails; one whose
//! findings are all excepted is skipped, with the exception in the message;
//! every other subject passes.
//!
//! The XML is written with `quick-xml`, which escapes attribute values and
//! text; characters XML 1.0 cannot carry at all (most control characters) are
//! replaced by U+FFFD. Order is fixed: policies as in the assessment,
//! subjects sorted by id.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use super::assessment::{Assessment, PolicyResult};
use super::formats::FormatError;
use crate::policy::findings::{Evaluation, Finding};

/// One test case before it is written.
struct Case<'a> {
    /// The subject id.
    name: &'a str,
    /// The findings about it (empty: it passed).
    findings: Vec<&'a Finding>,
}

impl Case<'_> {
    /// Whether some finding about it is not excepted.
    fn is_failure(&self) -> bool {
        self.findings.iter().any(|f| !f.is_excepted())
    }

    /// Whether all its findings are excepted (and there is one).
    fn is_skipped(&self) -> bool {
        !self.findings.is_empty() && !self.is_failure()
    }
}

/// One suite before it is written.
struct Suite<'a> {
    /// The policy.
    policy: &'a PolicyResult,
    /// Its cases, sorted by subject id.
    cases: Vec<Case<'a>>,
}

impl Suite<'_> {
    /// Failing cases.
    fn failures(&self) -> usize {
        self.cases.iter().filter(|c| c.is_failure()).count()
    }

    /// Skipped cases.
    fn skipped(&self) -> usize {
        self.cases.iter().filter(|c| c.is_skipped()).count()
    }
}

/// Replaces the characters XML 1.0 cannot represent, even escaped, by U+FFFD.
/// See <https://www.w3.org/TR/xml/#charsets>.
fn xml_safe(s: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    if s.chars().all(allowed) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| if allowed(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// Groups subjects and findings into suites.
fn suites<'a>(a: &'a Assessment, eval: &'a Evaluation) -> Result<Vec<Suite<'a>>, FormatError> {
    let subjects: u64 = a.subjects.values().sum();
    if eval.evaluated.is_empty() && subjects > 0 {
        return Err(FormatError::SubjectsNotKept);
    }
    let mut findings: BTreeMap<(&str, &str), Vec<&Finding>> = BTreeMap::new();
    for f in &a.findings {
        findings
            .entry((f.policy_id.as_str(), f.subject.id.as_str()))
            .or_default()
            .push(f);
    }
    Ok(a.policies
        .iter()
        .map(|p| {
            let mut names: BTreeSet<&str> = eval
                .evaluated
                .iter()
                .filter(|(kind, _)| p.applies_to.contains(kind))
                .map(|(_, id)| id.as_str())
                .collect();
            // INVARIANT: a finding's subject was evaluated; kept in case a
            // caller assembled the assessment by hand, so no finding is lost.
            names.extend(
                a.findings
                    .iter()
                    .filter(|f| f.policy_id == p.id)
                    .map(|f| f.subject.id.as_str()),
            );
            let cases = names
                .into_iter()
                .map(|name| Case {
                    name,
                    findings: findings
                        .get(&(p.id.as_str(), name))
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect();
            Suite { policy: p, cases }
        })
        .collect())
}

/// The body of a `<failure>`: facts, controls, evidence and remediation of
/// each finding.
fn failure_text(findings: &[&Finding]) -> String {
    let mut parts = Vec::new();
    for f in findings.iter().filter(|f| !f.is_excepted()) {
        let mut s = format!(
            "{}\nsubject: {} ({} tier)",
            f.facts, f.subject.id, f.subject.tier
        );
        if !f.controls.is_empty() {
            s.push_str(&format!("\ncontrols: {}", f.controls.join(", ")));
        }
        for e in &f.evidence {
            s.push_str(&format!("\nevidence: {} sha256:{}", e.location(), e.sha256));
        }
        s.push_str(&format!("\nremediation: {}", f.remediation));
        parts.push(s);
    }
    parts.join("\n\n")
}

/// The `message` of a `<skipped>`: every exception that covers the case.
fn skipped_message(findings: &[&Finding]) -> String {
    let mut seen = BTreeSet::new();
    findings
        .iter()
        .filter_map(|f| f.exception.as_ref())
        .filter(|x| seen.insert(x.id.as_str()))
        .map(|x| {
            format!(
                "excepted by {}: {} (approved by {}, expires {})",
                x.id, x.justification, x.approver, x.expires_at
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A start tag with attributes, made XML-safe (quick-xml escapes them).
fn element<'a>(name: &'a str, attrs: &[(&str, &str)]) -> BytesStart<'a> {
    let mut el = BytesStart::new(name);
    for (k, v) in attrs {
        el.push_attribute((*k, xml_safe(v).as_ref()));
    }
    el
}

/// Writes the JUnit report of an assessment.
pub fn render(a: &Assessment, eval: &Evaluation, out: &mut impl Write) -> Result<(), FormatError> {
    let suites = suites(a, eval)?;
    write_xml(&suites, out).map_err(|source| FormatError::Write {
        format: "JUnit",
        source,
    })
}

/// Writes the suites as XML.
fn write_xml(suites: &[Suite<'_>], out: &mut impl Write) -> std::io::Result<()> {
    let mut w = Writer::new_with_indent(&mut *out, b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = suites.iter().map(Suite::failures).sum();
    let skipped: usize = suites.iter().map(Suite::skipped).sum();
    w.write_event(Event::Start(element(
        "testsuites",
        &[
            ("name", "syncproof"),
            ("tests", &tests.to_string()),
            ("failures", &failures.to_string()),
            ("errors", "0"),
            ("skipped", &skipped.to_string()),
        ],
    )))?;
    for suite in suites {
        let p = suite.policy;
        w.write_event(Event::Start(element(
            "testsuite",
            &[
                ("name", &p.id),
                ("tests", &suite.cases.len().to_string()),
                ("failures", &suite.failures().to_string()),
                ("errors", "0"),
                ("skipped", &suite.skipped().to_string()),
            ],
        )))?;
        w.write_event(Event::Start(BytesStart::new("properties")))?;
        let controls = p.controls.join(", ");
        for (name, value) in [
            ("title", p.title.as_str()),
            ("severity", p.severity.as_str()),
            ("controls", controls.as_str()),
            ("source", p.source.as_str()),
        ] {
            w.write_event(Event::Empty(element(
                "property",
                &[("name", name), ("value", value)],
            )))?;
        }
        w.write_event(Event::End(BytesEnd::new("properties")))?;
        let classname = format!("syncproof.{}.{}", p.severity, p.id.replace('-', "_"));
        for case in &suite.cases {
            let start = element(
                "testcase",
                &[("classname", &classname), ("name", case.name)],
            );
            if case.is_failure() {
                w.write_event(Event::Start(start))?;
                w.write_event(Event::Start(element(
                    "failure",
                    &[("message", &p.title), ("type", p.severity.as_str())],
                )))?;
                let text = failure_text(&case.findings);
                w.write_event(Event::Text(BytesText::new(&xml_safe(&text))))?;
                w.write_event(Event::End(BytesEnd::new("failure")))?;
                w.write_event(Event::End(BytesEnd::new("testcase")))?;
            } else if case.is_skipped() {
                w.write_event(Event::Start(start))?;
                w.write_event(Event::Empty(element(
                    "skipped",
                    &[("message", &skipped_message(&case.findings))],
                )))?;
                w.write_event(Event::End(BytesEnd::new("testcase")))?;
            } else {
                w.write_event(Event::Empty(start))?;
            }
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_safe_replaces_only_forbidden_characters() {
        assert_eq!(xml_safe("a<&\">\tb"), "a<&\">\tb");
        assert_eq!(xml_safe("a\u{1}b\u{FFFF}"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn attributes_and_text_are_escaped() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out);
            w.write_event(Event::Start(element("testcase", &[("name", "<&\">'")])))
                .unwrap();
            w.write_event(Event::Text(BytesText::new("<&\">"))).unwrap();
            w.write_event(Event::End(BytesEnd::new("testcase")))
                .unwrap();
        }
        let xml = String::from_utf8(out).unwrap();
        assert_eq!(
            xml,
            "<testcase name=\"&lt;&amp;&quot;&gt;&apos;\">&lt;&amp;&quot;&gt;</testcase>"
        );
    }
}
