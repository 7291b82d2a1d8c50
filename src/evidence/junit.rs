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
//! The XML is written directly, laid out as `quick-xml`'s indenting writer
//! lays it out (two spaces per level); attribute values and text are escaped
//! with `quick-xml`'s [`escape`] (`<`, `>`, `&`, `'`, `"`), and characters XML
//! 1.0 cannot carry at all (most control characters) are replaced by U+FFFD.
//! Order is fixed: policies as in the assessment, subjects sorted by id.
//!
//! A W1 report holds millions of test cases, so rendering is streaming: no
//! per-case value is built. Each suite's subjects come from merging the
//! sorted lists of `eval.evaluated` for the kinds the policy covers, read
//! back from their temporary file as they are written, and its few findings
//! are walked alongside. Give [`render`] a buffered writer.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use quick_xml::escape::escape;

use super::assessment::{Assessment, PolicyResult};
use super::formats::FormatError;
use crate::policy::findings::{Evaluation, Finding, SubjectKind};
use crate::policy::subjects::{kind_of, Ids, SubjectLists};

/// Whether some finding of a test case is not excepted: it fails.
fn is_failure(findings: &[&Finding]) -> bool {
    findings.iter().any(|f| !f.is_excepted())
}

/// Whether a test case has findings and all are excepted: it is skipped.
fn is_skipped(findings: &[&Finding]) -> bool {
    !findings.is_empty() && !is_failure(findings)
}

/// One suite before it is written: a policy, where its subjects are, and the
/// counts its `<testsuite>` carries.
struct Suite<'a> {
    /// The policy.
    policy: &'a PolicyResult,
    /// The evaluated subjects.
    evaluated: &'a SubjectLists,
    /// The kinds the policy applies to.
    kinds: BTreeSet<SubjectKind>,
    /// The subjects with findings of this policy, sorted by id, each with its
    /// findings in assessment order.
    found: Vec<(&'a str, Vec<&'a Finding>)>,
    /// Test cases (distinct subjects).
    tests: usize,
    /// Failing cases.
    failures: usize,
    /// Skipped cases.
    skipped: usize,
}

impl Suite<'_> {
    /// Calls `f` with each of the suite's subject ids, sorted, without
    /// duplicates: the merge of the sorted lists of the kinds the policy
    /// applies to and of its finding subjects (what collecting them into a
    /// `BTreeSet` gives, without building one). Fails if the lists cannot be
    /// read back, or if `f` fails.
    fn for_each_name(&self, mut f: impl FnMut(&str) -> io::Result<()>) -> io::Result<()> {
        let mut runs = self
            .kinds
            .iter()
            .map(|kind| self.evaluated.ids(*kind))
            .collect::<io::Result<Vec<Ids<'_>>>>()?;
        let mut found = self.found.as_slice();
        let mut last: Option<String> = None;
        loop {
            // The smallest head; `None` as the source means `found`.
            let mut best = found.first().map(|(id, _)| *id);
            let mut source = None;
            for (i, run) in runs.iter().enumerate() {
                if let Some(id) = run.head() {
                    if best.is_none_or(|b| id < b) {
                        best = Some(id);
                        source = Some(i);
                    }
                }
            }
            let Some(id) = best else {
                return Ok(());
            };
            if last.as_deref() != Some(id) {
                f(id)?;
                let last = last.get_or_insert_with(String::new);
                last.clear();
                last.push_str(id);
            }
            match source {
                Some(i) => runs[i].advance()?,
                None => found = &found[1..],
            }
        }
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

/// The error for a failed read of the subject lists or write of the report.
fn io_error(source: io::Error) -> FormatError {
    FormatError::Write {
        format: "JUnit",
        source,
    }
}

/// Groups subjects and findings into suites and counts their cases
/// (`<testsuites>` opens with the totals): a suite's cases are the different
/// ids of the kinds it covers, which [`SubjectLists::distinct`] counts, and
/// those of its finding subjects that were not evaluated (none, when the
/// evaluation made the findings; only the runs that could hold a finding's
/// subject are read to tell).
fn suites<'a>(
    a: &'a Assessment,
    evaluated: &'a SubjectLists,
) -> Result<Vec<Suite<'a>>, FormatError> {
    let subjects: u64 = a.subjects.values().sum();
    if evaluated.is_empty() && subjects > 0 {
        return Err(FormatError::SubjectsNotKept);
    }
    let mut findings: BTreeMap<(&str, &str), Vec<&Finding>> = BTreeMap::new();
    let mut by_kind: BTreeMap<SubjectKind, Vec<&str>> = BTreeMap::new();
    for f in &a.findings {
        findings
            .entry((f.policy_id.as_str(), f.subject.id.as_str()))
            .or_default()
            .push(f);
        if let Some(kind) = kind_of(&f.subject.id) {
            by_kind.entry(kind).or_default().push(&f.subject.id);
        }
    }
    // The finding subjects that are in the list of the kind they name.
    let mut evaluated_found: BTreeSet<&str> = BTreeSet::new();
    for (kind, mut ids) in by_kind {
        ids.sort_unstable();
        ids.dedup();
        let contained = evaluated.contains(kind, &ids).map_err(io_error)?;
        evaluated_found.extend(
            ids.iter()
                .zip(contained)
                .filter(|(_, c)| *c)
                .map(|(id, _)| *id),
        );
    }
    Ok(a.policies
        .iter()
        .map(|p| {
            let kinds: BTreeSet<SubjectKind> = p.applies_to.iter().copied().collect();
            // INVARIANT: a finding's subject was evaluated; its findings are
            // kept in case a caller assembled the assessment by hand, so no
            // finding is lost.
            let found: Vec<(&str, Vec<&Finding>)> = findings
                .range((p.id.as_str(), "")..)
                .take_while(|((policy, _), _)| *policy == p.id)
                .map(|((_, subject), fs)| (*subject, fs.clone()))
                .collect();
            let failures = found.iter().filter(|(_, fs)| is_failure(fs)).count();
            let skipped = found.iter().filter(|(_, fs)| is_skipped(fs)).count();
            let listed = |id: &str| {
                kind_of(id).is_some_and(|k| kinds.contains(&k)) && evaluated_found.contains(id)
            };
            let tests = kinds.iter().map(|k| evaluated.distinct(*k)).sum::<usize>()
                + found.iter().filter(|(id, _)| !listed(id)).count();
            Suite {
                policy: p,
                evaluated,
                kinds,
                found,
                tests,
                failures,
                skipped,
            }
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

/// The bytes that stand for themselves in XML: printable ASCII except the
/// five that [`escape`] replaces.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x80 {
        table[b] = !matches!(b as u8, b'<' | b'>' | b'&' | b'\'' | b'"');
        b += 1;
    }
    table
};

/// Writes `s` as an attribute value or text: XML-safe, then escaped. Plain
/// ASCII (the usual subject id) is written as is.
fn write_escaped(out: &mut impl Write, s: &str) -> io::Result<()> {
    if s.bytes().all(|b| PLAIN[usize::from(b)]) {
        out.write_all(s.as_bytes())
    } else {
        out.write_all(escape(xml_safe(s)).as_bytes())
    }
}

/// Writes `<name k="v" ...` (no closing `>`), values escaped.
fn write_start(out: &mut impl Write, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
    out.write_all(b"<")?;
    out.write_all(name.as_bytes())?;
    for (k, v) in attrs {
        out.write_all(b" ")?;
        out.write_all(k.as_bytes())?;
        out.write_all(b"=\"")?;
        write_escaped(out, v)?;
        out.write_all(b"\"")?;
    }
    Ok(())
}

/// Writes the JUnit report of an assessment. `out` should be buffered: it
/// gets many small writes.
pub fn render(a: &Assessment, eval: &Evaluation, out: &mut impl Write) -> Result<(), FormatError> {
    let suites = suites(a, &eval.evaluated)?;
    write_xml(&suites, out).map_err(io_error)
}

/// Writes the suites as XML, laid out as `quick_xml::Writer::new_with_indent(_,
/// b' ', 2)` lays out the same events: each element on its own line, except
/// that a `<failure>`'s text and end tag follow its start tag.
fn write_xml(suites: &[Suite<'_>], out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
    let tests: usize = suites.iter().map(|s| s.tests).sum();
    let failures: usize = suites.iter().map(|s| s.failures).sum();
    let skipped: usize = suites.iter().map(|s| s.skipped).sum();
    write_start(
        out,
        "testsuites",
        &[
            ("name", "syncproof"),
            ("tests", &tests.to_string()),
            ("failures", &failures.to_string()),
            ("errors", "0"),
            ("skipped", &skipped.to_string()),
        ],
    )?;
    out.write_all(b">")?;
    for suite in suites {
        let p = suite.policy;
        out.write_all(b"\n  ")?;
        write_start(
            out,
            "testsuite",
            &[
                ("name", &p.id),
                ("tests", &suite.tests.to_string()),
                ("failures", &suite.failures.to_string()),
                ("errors", "0"),
                ("skipped", &suite.skipped.to_string()),
            ],
        )?;
        out.write_all(b">\n    <properties>")?;
        let controls = p.controls.join(", ");
        for (name, value) in [
            ("title", p.title.as_str()),
            ("severity", p.severity.as_str()),
            ("controls", controls.as_str()),
            ("source", p.source.as_str()),
        ] {
            out.write_all(b"\n      ")?;
            write_start(out, "property", &[("name", name), ("value", value)])?;
            out.write_all(b"/>")?;
        }
        out.write_all(b"\n    </properties>")?;
        // Everything of a `<testcase>` before its name's value, written once.
        let classname = format!("syncproof.{}.{}", p.severity, p.id.replace('-', "_"));
        let mut prefix = b"\n    ".to_vec();
        write_start(&mut prefix, "testcase", &[("classname", &classname)])?;
        prefix.extend_from_slice(b" name=\"");
        let mut found = suite.found.iter().peekable();
        let mut cases = 0;
        suite.for_each_name(|name| {
            cases += 1;
            out.write_all(&prefix)?;
            write_escaped(out, name)?;
            let findings = found.next_if(|(id, _)| *id == name).map(|(_, fs)| fs);
            match findings {
                Some(fs) if is_failure(fs) => {
                    out.write_all(b"\">\n      ")?;
                    write_start(
                        out,
                        "failure",
                        &[("message", &p.title), ("type", p.severity.as_str())],
                    )?;
                    out.write_all(b">")?;
                    write_escaped(out, &failure_text(fs))?;
                    out.write_all(b"</failure>\n    </testcase>")?;
                }
                Some(fs) if is_skipped(fs) => {
                    out.write_all(b"\">\n      ")?;
                    write_start(out, "skipped", &[("message", &skipped_message(fs))])?;
                    out.write_all(b"/>\n    </testcase>")?;
                }
                _ => out.write_all(b"\"/>")?,
            }
            Ok(())
        })?;
        if cases != suite.tests {
            // The totals written above would be wrong: no report at all.
            return Err(io::Error::other(format!(
                "suite `{}` was counted as {} test cases but lists {cases}",
                p.id, suite.tests
            )));
        }
        out.write_all(b"\n  </testsuite>")?;
    }
    out.write_all(b"\n</testsuites>\n")
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
    fn plain_bytes_are_those_neither_escaped_nor_replaced() {
        for b in 0..=255u8 {
            let s = [b];
            let plain = std::str::from_utf8(&s)
                .is_ok_and(|s| escape(xml_safe(s)) == s && !s.contains(['\t', '\n', '\r']));
            assert_eq!(PLAIN[usize::from(b)], plain, "{b:#x}");
        }
    }

    #[test]
    fn attributes_and_text_are_escaped() {
        let mut out = Vec::new();
        write_start(&mut out, "testcase", &[("name", "<&\">'"), ("id", "plain")]).unwrap();
        out.push(b'>');
        write_escaped(&mut out, "<&\">\u{1}é\n").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<testcase name=\"&lt;&amp;&quot;&gt;&apos;\" id=\"plain\">&lt;&amp;&quot;&gt;\u{FFFD}é\n"
        );
    }

    use crate::policy::findings::{AppliedException, Severity, Subject};
    use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

    fn policy(id: &str, applies_to: Vec<SubjectKind>) -> PolicyResult {
        PolicyResult {
            id: id.into(),
            title: "Title with 'quotes' & <tags>".into(),
            severity: Severity::High,
            controls: vec!["AC-2".into(), "NHI1:2025".into()],
            remediation: "fix it".into(),
            applies_to,
            evaluated: 0,
            failed: 0,
            excepted: 0,
            source: format!("{id}.cedar:1"),
        }
    }

    fn finding(policy_id: &str, subject: &str, excepted: bool) -> Finding {
        Finding {
            policy_id: policy_id.into(),
            severity: Severity::High,
            title: "t".into(),
            controls: vec!["AC-2".into()],
            subject: Subject {
                kind: SubjectKind::Grant,
                id: subject.into(),
                identity: None,
                identity_kind: None,
                application: None,
                entitlement: None,
                account: None,
                connector: None,
                tier: "high".into(),
            },
            facts: "facts <&> \"x\"\nline\u{7}".into(),
            context: serde_json::Value::Null,
            evidence: vec![],
            remediation: "do 'this'".into(),
            exception: excepted.then(|| AppliedException {
                id: "EXC-1".into(),
                justification: "because <reasons> & \"more\"".into(),
                approver: "a@example.com".into(),
                ticket: None,
                granted_at: "2026-01-01T00:00:00Z".into(),
                expires_at: "2026-12-31T00:00:00Z".into(),
            }),
        }
    }

    /// The suites rendered by `quick_xml`'s indenting writer, event by event,
    /// as JUnit was rendered before it was streamed: the layout reference.
    /// A suite's subject ids, in the order they are written.
    fn names(suite: &Suite<'_>) -> Vec<String> {
        let mut names = Vec::new();
        suite
            .for_each_name(|id| {
                names.push(id.to_owned());
                Ok(())
            })
            .unwrap();
        names
    }

    fn reference(suites: &[Suite<'_>]) -> Vec<u8> {
        fn el<'a>(name: &'a str, attrs: &[(&str, &str)]) -> BytesStart<'a> {
            let mut el = BytesStart::new(name);
            for (k, v) in attrs {
                el.push_attribute((*k, xml_safe(v).as_ref()));
            }
            el
        }
        let mut out = Vec::new();
        let mut w = quick_xml::Writer::new_with_indent(&mut out, b' ', 2);
        let n = |f: fn(&Suite<'_>) -> usize| suites.iter().map(f).sum::<usize>().to_string();
        let ev = [
            Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)),
            Event::Start(el(
                "testsuites",
                &[
                    ("name", "syncproof"),
                    ("tests", &n(|s| s.tests)),
                    ("failures", &n(|s| s.failures)),
                    ("errors", "0"),
                    ("skipped", &n(|s| s.skipped)),
                ],
            )),
        ];
        for e in ev {
            w.write_event(e).unwrap();
        }
        for s in suites {
            let p = s.policy;
            let (t, f, k) = (
                s.tests.to_string(),
                s.failures.to_string(),
                s.skipped.to_string(),
            );
            let attrs = [
                ("name", p.id.as_str()),
                ("tests", &t),
                ("failures", &f),
                ("errors", "0"),
                ("skipped", &k),
            ];
            w.write_event(Event::Start(el("testsuite", &attrs)))
                .unwrap();
            w.write_event(Event::Start(BytesStart::new("properties")))
                .unwrap();
            let controls = p.controls.join(", ");
            for (name, value) in [
                ("title", p.title.as_str()),
                ("severity", p.severity.as_str()),
                ("controls", &controls),
                ("source", &p.source),
            ] {
                let prop = el("property", &[("name", name), ("value", value)]);
                w.write_event(Event::Empty(prop)).unwrap();
            }
            w.write_event(Event::End(BytesEnd::new("properties")))
                .unwrap();
            let classname = format!("syncproof.{}.{}", p.severity, p.id.replace('-', "_"));
            for name in names(s) {
                let name = name.as_str();
                let start = el("testcase", &[("classname", &classname), ("name", name)]);
                let fs = s
                    .found
                    .iter()
                    .find(|(id, _)| *id == name)
                    .map(|(_, fs)| fs.clone())
                    .unwrap_or_default();
                if is_failure(&fs) {
                    w.write_event(Event::Start(start)).unwrap();
                    let attrs = [("message", p.title.as_str()), ("type", p.severity.as_str())];
                    w.write_event(Event::Start(el("failure", &attrs))).unwrap();
                    let text = failure_text(&fs);
                    w.write_event(Event::Text(BytesText::new(&xml_safe(&text))))
                        .unwrap();
                    w.write_event(Event::End(BytesEnd::new("failure"))).unwrap();
                    w.write_event(Event::End(BytesEnd::new("testcase")))
                        .unwrap();
                } else if is_skipped(&fs) {
                    w.write_event(Event::Start(start)).unwrap();
                    let skipped = el("skipped", &[("message", &skipped_message(&fs))]);
                    w.write_event(Event::Empty(skipped)).unwrap();
                    w.write_event(Event::End(BytesEnd::new("testcase")))
                        .unwrap();
                } else {
                    w.write_event(Event::Empty(start)).unwrap();
                }
            }
            w.write_event(Event::End(BytesEnd::new("testsuite")))
                .unwrap();
        }
        w.write_event(Event::End(BytesEnd::new("testsuites")))
            .unwrap();
        out.push(b'\n');
        out
    }

    fn sample() -> (Assessment, Evaluation) {
        use SubjectKind::*;
        let mut eval = Evaluation::default();
        let mut evaluated = crate::policy::subjects::EvaluatedSubjects::default();
        for (kind, id) in [
            (Grant, "grant:b"),
            (Change, "change:z"),
            (Grant, "grant:a<&>'\"\u{1}"),
            (Account, "account:x"),
            (Grant, "grant:a"),
            (Change, "change:a"),
            (Grant, "grant:b"),
        ] {
            evaluated.push(kind, id);
        }
        eval.evaluated = SubjectLists::from_subjects(evaluated).unwrap();
        eval.subjects.insert(Grant, 4);
        let findings = vec![
            finding("p-one", "grant:b", false),
            finding("p-one", "grant:b", true),
            finding("p-one", "grant:a", true),
            finding("p-one", "grant:never-evaluated", false),
            finding("p-two", "change:z", true),
        ];
        let a = Assessment {
            tool: super::super::assessment::Tool::current(),
            collection: "c".into(),
            as_of: "2026-11-20T12:00:00Z".into(),
            fail_on: Severity::Low,
            verdict: super::super::assessment::Verdict::Fail,
            policy_set_sha256: String::new(),
            counts: Default::default(),
            subjects: eval.subjects.clone(),
            policies: vec![
                policy("p-one", vec![Grant, Grant]),
                policy("p-two", vec![Grant, Change]),
                policy("p-none", vec![Snapshot]),
            ],
            findings,
            exceptions: vec![],
        };
        (a, eval)
    }

    #[test]
    fn layout_matches_quick_xml_indenting_writer() {
        let (a, eval) = sample();
        let mut out = Vec::new();
        render(&a, &eval, &mut out).unwrap();
        let suites = suites(&a, &eval.evaluated).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(reference(&suites)).unwrap()
        );
        let counts: Vec<_> = suites
            .iter()
            .map(|s| (s.tests, s.failures, s.skipped))
            .collect();
        assert_eq!(counts, [(4, 2, 1), (5, 0, 1), (0, 0, 0)]);
    }

    #[test]
    fn names_are_merged_sorted_and_distinct() {
        let (a, eval) = sample();
        let suites = suites(&a, &eval.evaluated).unwrap();
        let names = names(&suites[1]);
        assert_eq!(
            names,
            [
                "change:a",
                "change:z",
                "grant:a",
                "grant:a<&>'\"\u{1}",
                "grant:b"
            ]
        );
    }

    #[test]
    fn no_suites_and_no_subjects() {
        let (mut a, mut eval) = sample();
        a.policies.clear();
        a.subjects.clear();
        eval.evaluated = Default::default();
        let mut out = Vec::new();
        render(&a, &eval, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(reference(&[])).unwrap()
        );
    }
}
