//! The governance system's desired state: identities and their approved
//! assignments (YAML or JSON).
//!
//! Records point back at the line where each list item starts (block-style
//! YAML; JSON documents get line 0) and carry the SHA-256 of the item's
//! canonical JSON form, so the digest does not depend on YAML layout.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::digest::Sha256Digest;
use super::document;
use super::error::{Problems, RecordError};
use super::model::{Assignment, Identity, IdentityKind, SourceRef};
use super::raw::{RawAssignment, RawDesired, RawIdentity};
use crate::time::parse_timestamp;
use crate::FastMap;

/// The validated desired state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Desired {
    /// Identities, sorted by id.
    pub(crate) identities: Vec<Identity>,
    /// Assignments, sorted by (identity, application, entitlement).
    pub(crate) assignments: Vec<Assignment>,
}

/// Parses and validates the desired state in `text` from `file`.
pub(crate) fn parse(
    file: &str,
    text: &str,
    applications: &BTreeSet<String>,
) -> Result<Desired, Problems> {
    let mut problems = Problems::default();
    let raw: RawDesired = match document::parse(file, text) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e);
            return Err(problems);
        }
    };
    if let Some(t) = &raw.exported_at {
        if let Err(e) = parse_timestamp(t) {
            problems.push(RecordError::at_path(file, "exported_at", e));
        }
    }
    let file_ref: Arc<str> = Arc::from(file);
    let mut buf = Vec::with_capacity(512);
    let identity_lines = document::item_lines(text, "identities");
    let assignment_lines = document::item_lines(text, "assignments");
    let mut identities: FastMap<String, Identity> = FastMap::default();
    for (i, raw_id) in raw.identities.into_iter().enumerate() {
        let at = format_args!("identities[{i}]");
        let source = SourceRef {
            file: file_ref.clone(),
            line: identity_lines.get(i).copied().unwrap_or(0),
            sha256: canonical_digest(&mut buf, &raw_id),
        };
        match validate_identity(file, at, raw_id, applications, source) {
            Ok(identity) => {
                if let Some(first) = identities.get(&identity.id) {
                    problems.push(RecordError::at_path(
                        file,
                        format!("{at}.id"),
                        format!(
                            "identity `{}` is defined twice (first at line {})",
                            identity.id, first.source.line
                        ),
                    ));
                } else {
                    identities.insert(identity.id.clone(), identity);
                }
            }
            Err(e) => problems.push(e),
        }
    }
    // Validated assignments with their index, then sorted: a duplicate is
    // found next to its first listing. (A map keyed by cloned
    // (identity, application, entitlement) triples held a second copy of
    // every key.)
    let mut assignments: Vec<(usize, Assignment)> = Vec::with_capacity(raw.assignments.len());
    let mut bad: Vec<(usize, RecordError)> = Vec::new();
    for (i, raw_a) in raw.assignments.into_iter().enumerate() {
        let at = format_args!("assignments[{i}]");
        let source = SourceRef {
            file: file_ref.clone(),
            line: assignment_lines.get(i).copied().unwrap_or(0),
            sha256: canonical_digest(&mut buf, &raw_a),
        };
        match validate_assignment(file, at, raw_a, &identities, applications, source) {
            Ok(a) => assignments.push((i, a)),
            Err(e) => bad.push((i, e)),
        }
    }
    assignments.sort_unstable_by(|(i, a), (j, b)| key(a).cmp(&key(b)).then(i.cmp(j)));
    // In place: a listing equal to the one kept before it is a duplicate
    // (the first listing, with the smaller index, counts).
    assignments.dedup_by(|(i, later), (_, first)| {
        let twice = key(later) == key(first);
        if twice {
            bad.push((
                *i,
                RecordError::at_path(
                    file,
                    format!("assignments[{i}]"),
                    format!(
                        "assignment of `{}` to `{}` in `{}` is listed twice",
                        later.entitlement, later.identity, later.application
                    ),
                ),
            ));
        }
        twice
    });
    // Collected in place (the element only gets smaller).
    let kept: Vec<Assignment> = assignments.into_iter().map(|(_, a)| a).collect();
    // Problems in the order of the records, as they were met.
    bad.sort_by_key(|(i, _)| *i);
    for (_, e) in bad {
        problems.push(e);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Desired {
        identities: {
            let mut sorted: Vec<Identity> = identities.into_values().collect();
            sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            sorted
        },
        assignments: kept,
    })
}

/// The order of assignments, and what makes two the same.
fn key(a: &Assignment) -> (&str, &str, &str) {
    (&a.identity, &a.application, &a.entitlement)
}

fn validate_identity(
    file: &str,
    // Where the record is (`identities[3]`), formatted only when an error
    // names it.
    at: std::fmt::Arguments<'_>,
    raw: RawIdentity,
    applications: &BTreeSet<String>,
    source: SourceRef,
) -> Result<Identity, RecordError> {
    if raw.id.trim().is_empty() {
        return Err(RecordError::at_path(
            file,
            format!("{at}.id"),
            "identity id is empty",
        ));
    }
    if raw.kind != IdentityKind::Human && raw.owner.as_deref().is_none_or(str::is_empty) {
        return Err(RecordError::at_path(
            file,
            format!("{at}.owner"),
            format!(
                "non-human identity `{}` ({}) has no owner",
                raw.id,
                raw.kind.as_str()
            ),
        )
        .with_help("every service account, API key, bot and workload needs an accountable owner"));
    }
    for app in raw.accounts.keys() {
        if !applications.contains(app) {
            return Err(RecordError::at_path(
                file,
                format!("{at}.accounts.{app}"),
                format!("unknown application `{app}` (not in `collection.yaml`)"),
            ));
        }
    }
    Ok(Identity {
        id: raw.id,
        display_name: raw.display_name,
        kind: raw.kind,
        owner: raw.owner,
        status: raw.status,
        accounts: raw.accounts,
        source,
    })
}

fn validate_assignment(
    file: &str,
    // Where the record is (`identities[3]`), formatted only when an error
    // names it.
    at: std::fmt::Arguments<'_>,
    raw: RawAssignment,
    identities: &FastMap<String, Identity>,
    applications: &BTreeSet<String>,
    source: SourceRef,
) -> Result<Assignment, RecordError> {
    if !identities.contains_key(&raw.identity) {
        return Err(RecordError::at_path(
            file,
            format!("{at}.identity"),
            format!("unknown identity `{}`", raw.identity),
        ));
    }
    if !applications.contains(&raw.application) {
        return Err(RecordError::at_path(
            file,
            format!("{at}.application"),
            format!(
                "unknown application `{}` (not in `collection.yaml`)",
                raw.application
            ),
        ));
    }
    if raw.entitlement.trim().is_empty() {
        return Err(RecordError::at_path(
            file,
            format!("{at}.entitlement"),
            "entitlement is empty",
        ));
    }
    let granted_at = parse_timestamp(&raw.granted_at)
        .map_err(|e| RecordError::at_path(file, format!("{at}.granted_at"), e))?;
    let expires_at = match &raw.expires_at {
        Some(t) => Some(
            parse_timestamp(t)
                .map_err(|e| RecordError::at_path(file, format!("{at}.expires_at"), e))?,
        ),
        None => None,
    };
    if expires_at.is_some_and(|e| e < granted_at) {
        return Err(RecordError::at_path(
            file,
            format!("{at}.expires_at"),
            "expires before it was granted",
        ));
    }
    Ok(Assignment {
        identity: raw.identity,
        application: raw.application,
        entitlement: raw.entitlement,
        granted_at,
        expires_at,
        approval: raw.approval,
        source,
    })
}

/// SHA-256 of a record's canonical JSON form: fields in declaration order,
/// maps sorted by key, no whitespace.
/// The SHA-256 of `record`'s canonical JSON form, serialized into `buf`
/// (reused from record to record).
fn canonical_digest<T: serde::Serialize>(buf: &mut Vec<u8>, record: &T) -> Sha256Digest {
    buf.clear();
    // Serializing plain records into memory cannot fail; if it ever did, the
    // digest of the empty form would still be stable.
    if serde_json::to_writer(&mut *buf, record).is_err() {
        buf.clear();
    }
    Sha256Digest::of(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> BTreeSet<String> {
        ["crm".to_owned()].into()
    }

    const GOOD: &str = "\
identities:
  - id: alice
    kind: human
    status: active
  - id: svc-backup
    kind: service_account
    owner: alice
    status: active
    accounts:
      crm: backup-bot
assignments:
  - identity: alice
    application: crm
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: svc-backup
    application: crm
    entitlement: reader
    granted_at: 2026-01-01T00:00:00Z
    expires_at: 2026-12-01T00:00:00Z
";

    #[test]
    fn parses_and_points_at_lines() {
        let d = parse("desired.yaml", GOOD, &apps()).unwrap();
        assert_eq!(d.identities.len(), 2);
        assert_eq!(d.identities[0].source.line, 2);
        assert_eq!(d.identities[1].source.line, 5);
        assert_eq!(d.assignments[0].source.line, 12);
        assert_eq!(d.assignments[1].source.line, 16);
        assert_eq!(d.identities[1].accounts["crm"], "backup-bot");
    }

    #[test]
    fn reports_every_bad_record() {
        let text = "\
identities:
  - id: alice
    kind: human
    status: active
  - id: alice
    kind: human
    status: active
  - id: bot1
    kind: bot
    status: active
assignments:
  - identity: nobody
    application: crm
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: alice
    application: erp
    entitlement: admin
    granted_at: 2026-01-01T00:00:00Z
  - identity: alice
    application: crm
    entitlement: admin
    granted_at: yesterday
";
        let p = parse("d.yaml", text, &apps()).unwrap_err();
        let err = p.into_result("d.yaml").unwrap_err();
        let shown = format!("{:?}", miette::Report::new(err));
        for needle in [
            "identity `alice` is defined twice",
            "identities[2].owner",
            "unknown identity `nobody`",
            "unknown application `erp`",
            "assignments[2].granted_at",
        ] {
            assert!(shown.contains(needle), "missing {needle}: {shown}");
        }
    }

    #[test]
    fn unknown_kind_is_an_error_with_location() {
        let text = "identities:\n  - id: a\n    kind: robot\n    status: active\n";
        let p = parse("d.yaml", text, &apps()).unwrap_err();
        let err = p.into_result("d.yaml").unwrap_err();
        let shown = format!("{:?}", miette::Report::new(err));
        assert!(shown.contains("d.yaml:3:"), "{shown}");
        assert!(shown.contains("identities[0].kind"), "{shown}");
    }
}
