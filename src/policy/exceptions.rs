//! Approved exceptions: time-limited risk acceptances that mark findings as
//! *excepted* — visible in every output, counted apart, never silent.
//!
//! An exception names a policy and a subject (identity, application,
//! entitlement, account, connector; `*` wildcards), a justification, an
//! approver, when it was granted and when it expires. At `--as-of` it is:
//! - **live** when `granted_at ≤ as-of < expires_at`: it covers matching
//!   findings, unless it lasts longer than the subject's tier allows
//!   (`max_exception` in `tiers.yaml`), in which case it covers nothing for
//!   that subject and is reported as **over-long**;
//! - **expired** when `expires_at ≤ as-of` (expiring exactly at as-of has
//!   expired): the finding counts again, and the exception is reported;
//! - **not yet valid** when `granted_at > as-of`;
//! - **stale** when live but matching no finding, so lists don't rot.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::findings::{AppliedException, Finding};
use crate::ingest::error::{IngestError, Problems, RecordError};
use crate::ingest::model::TierTargets;
use crate::time::{format_timestamp, parse_timestamp, Span, Timestamp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Items are read one by one so that every bad entry is reported.
    exceptions: Vec<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    id: String,
    policy: String,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    application: Option<String>,
    #[serde(default)]
    entitlement: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    connector: Option<String>,
    justification: String,
    approver: String,
    #[serde(default)]
    ticket: Option<String>,
    granted_at: String,
    expires_at: String,
}

/// A validated exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exception {
    /// Its id.
    pub id: String,
    /// The policy it covers.
    pub policy: String,
    /// Subject patterns by field (`identity`, `application`, ...).
    pub patterns: BTreeMap<String, String>,
    /// Why.
    pub justification: String,
    /// Who approved it.
    pub approver: String,
    /// Ticket reference.
    pub ticket: Option<String>,
    /// Granted at.
    #[serde(with = "crate::time::rfc3339")]
    pub granted_at: Timestamp,
    /// Expires at.
    #[serde(with = "crate::time::rfc3339")]
    pub expires_at: Timestamp,
    /// The file it came from.
    pub file: String,
    /// The line it starts on.
    pub line: u64,
}

/// Where an exception stands at `--as-of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionStatus {
    /// Live and covering at least one finding.
    Live,
    /// Live but matching no finding: retire it.
    Stale,
    /// Past its expiry: covers nothing.
    Expired,
    /// Granted after as-of: covers nothing yet.
    NotYetValid,
    /// Lasts longer than a matched subject's tier allows: covers nothing there.
    OverLong,
}

/// What happened to one exception.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExceptionReport {
    /// The exception.
    #[serde(flatten)]
    pub exception: Exception,
    /// Where it stands.
    pub status: ExceptionStatus,
    /// Findings it covers (subject ids).
    pub covers: Vec<String>,
    /// Findings it matches but does not cover (expired, over-long, ...).
    pub matches_uncovered: Vec<String>,
    /// One line for a person.
    pub detail: String,
}

/// Reads and validates an exceptions file. `known_policies` are the pack's
/// policy ids.
pub fn load(
    file: &str,
    text: &str,
    known_policies: &BTreeSet<String>,
) -> Result<Vec<Exception>, IngestError> {
    let mut problems = Problems::default();
    let raw: RawFile = match crate::ingest::parse_yaml_document(file, text) {
        Ok(r) => r,
        Err(e) => {
            return Err(IngestError::Invalid {
                file: file.to_owned(),
                count: 1,
                errors: vec![e],
            })
        }
    };
    let lines = crate::ingest::yaml_item_lines(text, "exceptions");
    let mut out: Vec<Exception> = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, value) in raw.exceptions.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let at = |field: &str| {
            if field.is_empty() {
                format!("exceptions[{i}]")
            } else {
                format!("exceptions[{i}].{field}")
            }
        };
        let err = |field: &str, msg: String| {
            if line > 0 {
                RecordError::at_line(file, line, format!("{}: {msg}", at(field)))
            } else {
                RecordError::at_path(file, at(field), msg)
            }
        };
        let r: RawException = match serde_path_to_error::deserialize(value) {
            Ok(r) => r,
            Err(e) => {
                let field = e.path().to_string();
                let msg = e.into_inner().to_string();
                problems.push(err(if field == "." { "" } else { &field }, msg).with_help(
                    "every exception needs id, policy, justification, approver, granted_at and expires_at",
                ));
                continue;
            }
        };
        let mut bad = false;
        if !ids.insert(r.id.clone()) {
            problems.push(err("id", format!("exception `{}` is defined twice", r.id)));
            bad = true;
        }
        if !known_policies.contains(&r.policy) {
            problems.push(
                err("policy", format!("unknown policy `{}`", r.policy))
                    .with_help("`syncproof policy list` shows the policy ids"),
            );
            bad = true;
        }
        for (field, value) in [
            ("justification", &r.justification),
            ("approver", &r.approver),
        ] {
            if value.trim().is_empty() {
                problems.push(err(field, format!("`{field}` is empty")));
                bad = true;
            }
        }
        let granted = parse_timestamp(&r.granted_at).map_err(|e| err("granted_at", e));
        let expires = parse_timestamp(&r.expires_at).map_err(|e| err("expires_at", e));
        let (granted, expires) = match (granted, expires) {
            (Ok(g), Ok(e)) => (g, e),
            (g, e) => {
                for x in [g.err(), e.err()].into_iter().flatten() {
                    problems.push(x);
                }
                continue;
            }
        };
        if expires <= granted {
            problems.push(err(
                "expires_at",
                "expires before it was granted".to_owned(),
            ));
            bad = true;
        }
        let mut patterns = BTreeMap::new();
        for (field, value) in [
            ("identity", r.identity),
            ("application", r.application),
            ("entitlement", r.entitlement),
            ("account", r.account),
            ("connector", r.connector),
        ] {
            if let Some(v) = value {
                patterns.insert(field.to_owned(), v);
            }
        }
        if patterns.is_empty() {
            problems.push(
                err("policy", "names no subject".to_owned()).with_help(
                    "name at least one of identity, application, entitlement, account, connector (`*` for any)",
                ),
            );
            bad = true;
        }
        if bad {
            continue;
        }
        out.push(Exception {
            id: r.id,
            policy: r.policy,
            patterns,
            justification: r.justification.trim().to_owned(),
            approver: r.approver,
            ticket: r.ticket,
            granted_at: granted,
            expires_at: expires,
            file: file.to_owned(),
            line,
        });
    }
    problems.into_result(file)?;
    Ok(out)
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn matches(e: &Exception, f: &Finding) -> bool {
    if e.policy != f.policy_id {
        return false;
    }
    e.patterns.iter().all(|(field, pattern)| {
        let value = match field.as_str() {
            "identity" => f.subject.identity.as_deref(),
            "application" => f.subject.application.as_deref(),
            "entitlement" => f.subject.entitlement.as_deref(),
            "account" => f.subject.account.as_deref(),
            "connector" => f.subject.connector.as_deref(),
            _ => None,
        };
        match value {
            Some(v) => glob(pattern, v),
            None => pattern == "*",
        }
    })
}

/// Marks findings covered by live exceptions and reports every exception's
/// status. The first live exception (by id) that covers a finding is the one
/// recorded on it.
pub fn apply(
    findings: &mut [Finding],
    exceptions: &[Exception],
    as_of: Timestamp,
    tiers: &BTreeMap<String, TierTargets>,
) -> Vec<ExceptionReport> {
    let mut sorted: Vec<&Exception> = exceptions.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut reports = Vec::new();
    for e in sorted {
        let length = Span::between(&e.granted_at, &e.expires_at);
        let mut covers = Vec::new();
        let mut uncovered = Vec::new();
        let mut over_long = false;
        let time_status = if e.expires_at <= as_of {
            Some(ExceptionStatus::Expired)
        } else if e.granted_at > as_of {
            Some(ExceptionStatus::NotYetValid)
        } else {
            None
        };
        for f in findings.iter_mut().filter(|f| matches(e, f)) {
            let cap = tiers.get(&f.subject.tier).and_then(|t| t.max_exception);
            let too_long = cap.is_some_and(|c| length > c);
            over_long |= too_long;
            if time_status.is_some() || too_long || f.exception.is_some() {
                if f.exception.is_none() {
                    uncovered.push(f.subject.id.clone());
                }
                continue;
            }
            f.exception = Some(AppliedException {
                id: e.id.clone(),
                justification: e.justification.clone(),
                approver: e.approver.clone(),
                ticket: e.ticket.clone(),
                granted_at: format_timestamp(&e.granted_at),
                expires_at: format_timestamp(&e.expires_at),
            });
            covers.push(f.subject.id.clone());
        }
        let status = match time_status {
            Some(s) => s,
            None if over_long => ExceptionStatus::OverLong,
            None if covers.is_empty() => ExceptionStatus::Stale,
            None => ExceptionStatus::Live,
        };
        let detail = match status {
            ExceptionStatus::Live => format!(
                "covers {} finding(s) of `{}` until {}",
                covers.len(),
                e.policy,
                format_timestamp(&e.expires_at)
            ),
            ExceptionStatus::Stale => format!(
                "live until {} but matches no finding of `{}`: retire it",
                format_timestamp(&e.expires_at),
                e.policy
            ),
            ExceptionStatus::Expired => format!(
                "expired {}; the {} finding(s) it matches count again",
                format_timestamp(&e.expires_at),
                uncovered.len()
            ),
            ExceptionStatus::NotYetValid => format!(
                "granted {}, after as-of: covers nothing yet",
                format_timestamp(&e.granted_at)
            ),
            ExceptionStatus::OverLong => format!(
                "lasts {length}, longer than the tier allows; the {} finding(s) it matches there count again",
                uncovered.len()
            ),
        };
        reports.push(ExceptionReport {
            exception: e.clone(),
            status,
            covers,
            matches_uncovered: uncovered,
            detail,
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::findings::{Severity, Subject, SubjectKind};

    fn finding(policy: &str, identity: &str, app: &str, ent: &str, tier: &str) -> Finding {
        Finding {
            policy_id: policy.into(),
            severity: Severity::High,
            title: String::new(),
            controls: vec![],
            subject: Subject {
                kind: SubjectKind::Grant,
                id: format!("grant:{app}/{identity}/{ent}"),
                identity: Some(identity.into()),
                identity_kind: Some("human".into()),
                application: Some(app.into()),
                entitlement: Some(ent.into()),
                account: Some(identity.into()),
                connector: None,
                tier: tier.into(),
            },
            facts: String::new(),
            context: serde_json::Value::Null,
            evidence: vec![],
            remediation: String::new(),
            exception: None,
        }
    }

    fn policies() -> BTreeSet<String> {
        ["unauthorized-access".to_owned(), "not-revoked".to_owned()].into()
    }

    fn tiers() -> BTreeMap<String, TierTargets> {
        let t = |cap: &str| TierTargets {
            max_sync_latency: Span::parse("1h").unwrap(),
            revocation_window: Span::parse("1h").unwrap(),
            max_grant_age: Span::parse("90d").unwrap(),
            heartbeat_window: Span::parse("1h").unwrap(),
            max_snapshot_age: Span::parse("1d").unwrap(),
            max_exception: Some(Span::parse(cap).unwrap()),
        };
        BTreeMap::from([("critical".into(), t("30d")), ("low".into(), t("365d"))])
    }

    fn exc(expires: &str, granted: &str, entitlement: &str) -> String {
        format!(
            "exceptions:\n  - id: X1\n    policy: unauthorized-access\n    identity: alice\n    entitlement: \"{entitlement}\"\n    justification: break glass\n    approver: ciso\n    granted_at: {granted}\n    expires_at: {expires}\n"
        )
    }

    fn ts(s: &str) -> Timestamp {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn live_exception_covers_and_expiry_boundary_uncovers() {
        let text = exc("2026-11-20T12:00:00Z", "2026-11-01T00:00:00Z", "crm:*");
        let ex = load("e.yaml", &text, &policies()).unwrap();
        // One millisecond before expiry: live.
        let mut f = vec![finding(
            "unauthorized-access",
            "alice",
            "crm",
            "crm:admin",
            "low",
        )];
        let r = apply(&mut f, &ex, ts("2026-11-20T11:59:59.999Z"), &tiers());
        assert_eq!(r[0].status, ExceptionStatus::Live);
        assert_eq!(f[0].exception.as_ref().unwrap().id, "X1");
        // Exactly at expiry: expired, the finding counts again.
        let mut f = vec![finding(
            "unauthorized-access",
            "alice",
            "crm",
            "crm:admin",
            "low",
        )];
        let r = apply(&mut f, &ex, ts("2026-11-20T12:00:00Z"), &tiers());
        assert_eq!(r[0].status, ExceptionStatus::Expired);
        assert!(f[0].exception.is_none());
        assert_eq!(r[0].matches_uncovered.len(), 1);
    }

    #[test]
    fn stale_when_nothing_matches() {
        let ex = load(
            "e.yaml",
            &exc("2027-01-01T00:00:00Z", "2026-11-01T00:00:00Z", "erp:*"),
            &policies(),
        )
        .unwrap();
        let mut f = vec![finding(
            "unauthorized-access",
            "alice",
            "crm",
            "crm:admin",
            "low",
        )];
        let r = apply(&mut f, &ex, ts("2026-11-20T12:00:00Z"), &tiers());
        assert_eq!(r[0].status, ExceptionStatus::Stale);
        assert!(f[0].exception.is_none());
    }

    #[test]
    fn over_long_for_the_tier_covers_nothing() {
        // 60 days: fine for low (365d cap), too long for critical (30d cap).
        let ex = load(
            "e.yaml",
            &exc("2026-12-31T00:00:00Z", "2026-11-01T00:00:00Z", "*"),
            &policies(),
        )
        .unwrap();
        let mut f = vec![finding(
            "unauthorized-access",
            "alice",
            "db",
            "db:admin",
            "critical",
        )];
        let r = apply(&mut f, &ex, ts("2026-11-20T12:00:00Z"), &tiers());
        assert_eq!(r[0].status, ExceptionStatus::OverLong);
        assert!(f[0].exception.is_none());
        let mut f = vec![finding(
            "unauthorized-access",
            "alice",
            "crm",
            "crm:admin",
            "low",
        )];
        let r = apply(&mut f, &ex, ts("2026-11-20T12:00:00Z"), &tiers());
        assert_eq!(r[0].status, ExceptionStatus::Live);
    }

    #[test]
    fn other_policies_are_not_covered() {
        let ex = load(
            "e.yaml",
            &exc("2027-01-01T00:00:00Z", "2026-11-01T00:00:00Z", "*"),
            &policies(),
        )
        .unwrap();
        let mut f = vec![finding("not-revoked", "alice", "crm", "crm:admin", "low")];
        apply(&mut f, &ex, ts("2026-11-20T12:00:00Z"), &tiers());
        assert!(f[0].exception.is_none());
    }

    #[test]
    fn missing_fields_and_unknown_policy_are_input_errors_with_lines() {
        let text = "exceptions:\n  - id: A\n    policy: no-such-policy\n    identity: x\n    justification: j\n    approver: a\n    granted_at: 2026-01-01T00:00:00Z\n    expires_at: 2026-02-01T00:00:00Z\n  - id: B\n    policy: not-revoked\n    identity: x\n    approver: a\n    granted_at: 2026-01-01T00:00:00Z\n    expires_at: 2026-02-01T00:00:00Z\n";
        let e = load("e.yaml", text, &policies()).unwrap_err();
        let shown = format!("{:?}", miette::Report::new(e));
        assert!(shown.contains("e.yaml:2"), "{shown}");
        assert!(shown.contains("unknown policy `no-such-policy`"), "{shown}");
        assert!(shown.contains("justification"), "{shown}");
        let no_expiry = "exceptions:\n  - id: A\n    policy: not-revoked\n    identity: x\n    justification: j\n    approver: a\n    granted_at: 2026-01-01T00:00:00Z\n";
        let shown = format!(
            "{:?}",
            miette::Report::new(load("e.yaml", no_expiry, &policies()).unwrap_err())
        );
        assert!(shown.contains("expires_at"), "{shown}");
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("crm:*", "crm:admin"));
        assert!(!glob("crm:*", "erp:admin"));
        assert!(glob("*:admin", "crm:admin"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcdf"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
