//! The machine formats CI systems and GRC platforms read — SARIF 2.1.0
//! ([`super::sarif`]), JUnit XML ([`super::junit`]) and OSCAL Assessment
//! Results 1.1.3 ([`super::oscal`]) — and what they share: the error type, the
//! list of files an evidence pack carries, and small helpers.
//!
//! Every format is rendered from the one findings model,
//! [`Assessment`]; none computes findings of
//! its own. Every format is a pure function of its inputs: rendering twice
//! gives identical bytes (no wall clock, no random ids, no hash-map order).

use std::collections::BTreeMap;

use crate::evidence::assessment::Assessment;
use crate::evidence::pack::{PackBuilder, PackError};
use crate::ingest::model::TierTargets;
use crate::policy::controls::Catalog;
use crate::policy::findings::Evaluation;
use crate::reconcile::Reconciled;

/// File name of the SARIF report in an evidence pack.
pub const SARIF_FILE: &str = "findings.sarif";
/// File name of the JUnit report in an evidence pack.
pub const JUNIT_FILE: &str = "findings.junit.xml";
/// File name of the OSCAL Assessment Results in an evidence pack.
pub const OSCAL_FILE: &str = "assessment-results.oscal.json";

/// Why a machine format could not be rendered.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FormatError {
    /// Serialising a JSON format failed.
    #[error("cannot serialise the {format} report")]
    Json {
        /// Which format.
        format: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Writing a format to its destination failed.
    #[error("cannot write the {format} report")]
    Write {
        /// Which format.
        format: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// JUnit lists every evaluated subject, but the evaluation did not keep
    /// them.
    #[error(
        "the JUnit report lists every evaluated subject, but the evaluation did not keep them"
    )]
    #[diagnostic(help(
        "evaluate with `EvaluateOptions {{ keep_subjects: true }}` before rendering JUnit"
    ))]
    SubjectsNotKept,
}

/// The machine-format files of an evidence pack, in a fixed order:
/// `findings.sarif`, `findings.junit.xml`, `assessment-results.oscal.json`.
///
/// SARIF locations are relative to the collection root (the pack records
/// input paths that way); OSCAL observations carry no `expires` (use
/// [`machine_files_with`] to give the tier targets). `eval` must have been
/// made with `keep_subjects: true`, or JUnit fails with
/// [`FormatError::SubjectsNotKept`].
pub fn machine_files(
    a: &Assessment,
    eval: &Evaluation,
    r: &Reconciled,
    catalog: &Catalog,
) -> Result<Vec<(String, Vec<u8>)>, FormatError> {
    machine_files_with(a, eval, r, catalog, None)
}

/// [`machine_files`], with the tier targets so that each snapshot's OSCAL
/// observation `expires` when its tier's `max_snapshot_age` runs out.
pub fn machine_files_with(
    a: &Assessment,
    eval: &Evaluation,
    r: &Reconciled,
    catalog: &Catalog,
    tiers: Option<&BTreeMap<String, TierTargets>>,
) -> Result<Vec<(String, Vec<u8>)>, FormatError> {
    let mut sarif = Vec::new();
    super::sarif::render(a, catalog, "", &mut sarif)?;
    let mut junit = Vec::new();
    super::junit::render(a, eval, &mut junit)?;
    let mut oscal = Vec::new();
    super::oscal::render(a, r, catalog, tiers, &mut oscal)?;
    Ok(vec![
        (SARIF_FILE.to_owned(), sarif),
        (JUNIT_FILE.to_owned(), junit),
        (OSCAL_FILE.to_owned(), oscal),
    ])
}

/// Adds the machine-format files to a pack as streamed files, with the same
/// names and bytes as [`machine_files_with`] gives: each is rendered straight
/// into its file when the pack is written (concurrently with the others), so
/// the JUnit report, which lists every evaluated subject, is never held in
/// memory. `eval` must have been made with `keep_subjects: true`, or writing
/// the pack fails with [`FormatError::SubjectsNotKept`] as its cause.
pub fn add_machine_files<'a>(
    builder: &mut PackBuilder<'a>,
    a: &'a Assessment,
    eval: &'a Evaluation,
    r: &'a Reconciled,
    catalog: &'a Catalog,
    tiers: Option<&'a BTreeMap<String, TierTargets>>,
) -> Result<(), PackError> {
    // JUnit first: it lists every evaluated subject, by far the largest
    // file, and the pack starts streamed files in the order they are added.
    builder.add_streamed(JUNIT_FILE, move |mut out| {
        super::junit::render(a, eval, &mut out)
    })?;
    builder.add_streamed(SARIF_FILE, move |mut out| {
        super::sarif::render(a, catalog, "", &mut out)
    })?;
    builder.add_streamed(OSCAL_FILE, move |mut out| {
        super::oscal::render(a, r, catalog, tiers, &mut out)
    })
}

/// Writes `value` as pretty JSON with a final newline.
pub(crate) fn write_json<T: serde::Serialize>(
    format: &'static str,
    value: &T,
    out: &mut impl std::io::Write,
) -> Result<(), FormatError> {
    serde_json::to_writer_pretty(&mut *out, value)
        .map_err(|source| FormatError::Json { format, source })?;
    out.write_all(b"\n")
        .map_err(|source| FormatError::Write { format, source })
}

/// Percent-encodes a `/`-separated relative path (or `file:` URI) for use as
/// a URI reference: RFC 3986 unreserved characters, `/` and `:` stay, every
/// other byte becomes `%XX`.
pub fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The CSF 1.1 ids a control replaces, for display beside it: `" (CSF 1.1:
/// PR.AC-4)"`, or empty.
pub(crate) fn crosswalk_note(catalog: &Catalog, id: &str) -> String {
    match catalog.get(id) {
        Some(c) if !c.csf_1_1.is_empty() => format!(" (CSF 1.1: {})", c.csf_1_1.join(", ")),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_path_encodes_only_what_it_must() {
        assert_eq!(uri_path("samples/logs/x.jsonl"), "samples/logs/x.jsonl");
        assert_eq!(uri_path("a b/ü#?.json"), "a%20b/%C3%BC%23%3F.json");
    }
}
