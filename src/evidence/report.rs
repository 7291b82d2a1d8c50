//! The report model behind `report.html` and `report.md`: the assessment plus
//! everything a reader needs around it — a verdict per control, latency per
//! tier against its targets, drift, connector health, snapshot ages, the
//! digests of every input, and how to verify the pack.
//!
//! Built once, serialised once, rendered by one template per format, so the
//! formats cannot disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::assessment::{Assessment, PolicyResult};
use crate::ingest::model::{InputFile, TierTargets};
use crate::policy::controls::Catalog;
use crate::policy::findings::Severity;
use crate::policy::CompiledPack;
use crate::reconcile::model::{Anomaly, ConnectorHealth, Drift, DriftClass, Reconciled};
use crate::reconcile::summary::{summarise, LatencyStats};
use crate::time::{format_timestamp, Span};

/// A control's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlVerdict {
    /// Tested, no finding.
    Satisfied,
    /// Tested; every finding is covered by a live exception.
    SatisfiedWithExceptions,
    /// At least one finding not covered by an exception.
    NotSatisfied,
    /// No policy evaluated a subject for it.
    NotTested,
}

/// A finding as listed under a control.
#[derive(Clone, Debug, Serialize)]
pub struct FindingLine {
    /// Policy id.
    pub policy_id: String,
    /// Severity.
    pub severity: Severity,
    /// Subject id.
    pub subject: String,
    /// The facts.
    pub facts: String,
    /// Evidence, as `file:line`.
    pub evidence: Vec<String>,
    /// The covering exception's id, if any.
    pub excepted_by: Option<String>,
}

/// One control's section.
#[derive(Clone, Debug, Serialize)]
pub struct ControlSection {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Framework title.
    pub framework: String,
    /// CSF 1.1 ids that map to it.
    pub csf_1_1: Vec<String>,
    /// Verdict.
    pub verdict: ControlVerdict,
    /// Policies that test it.
    pub policies: Vec<PolicyResult>,
    /// Findings that claim it.
    pub findings: Vec<FindingLine>,
}

/// Latency figures for one tier, formatted.
#[derive(Clone, Debug, Serialize)]
pub struct TierSection {
    /// Tier name.
    pub name: String,
    /// Targets, formatted.
    pub targets: BTreeMap<String, String>,
    /// Confirmed / failed / pending changes.
    pub confirmed: usize,
    /// Failed changes.
    pub failed: usize,
    /// Pending changes.
    pub pending: usize,
    /// Sync latency figures.
    pub sync: LatencyFigures,
    /// Revocation latency figures.
    pub revocation: LatencyFigures,
}

/// Latency figures, formatted, with whether each is over its target.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyFigures {
    /// Changes measured.
    pub count: usize,
    /// Median.
    pub median: String,
    /// 95th percentile.
    pub p95: String,
    /// Maximum.
    pub max: String,
    /// The target.
    pub target: String,
    /// Whether the maximum is over the target.
    pub over_target: bool,
}

/// Drift records of one class.
#[derive(Clone, Debug, Serialize)]
pub struct DriftSection {
    /// Class id.
    pub class: String,
    /// Heading.
    pub title: String,
    /// Records.
    pub records: Vec<Drift>,
}

/// A connector row.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectorRow {
    /// Health.
    #[serde(flatten)]
    pub health: ConnectorHealth,
    /// Tier applied.
    pub tier: String,
    /// Its heartbeat window.
    pub heartbeat_window: String,
    /// `ok`, `silent` or `failing`.
    pub status: String,
}

/// A snapshot row.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotRow {
    /// Application.
    pub application: String,
    /// Tier.
    pub tier: String,
    /// Format.
    pub format: String,
    /// Taken at.
    pub taken_at: String,
    /// Age.
    pub age: String,
    /// Max age for the tier.
    pub max_age: String,
    /// Whether it is older than allowed.
    pub stale: bool,
}

/// Everything the report templates show. It borrows the assessment and the
/// reconciled collection's lists rather than copying them: at W10 the
/// findings alone are tens of MB, and the report is converted for the
/// templates (see [`super::render::ReportContext`]) while they are held.
#[derive(Clone, Debug, Serialize)]
pub struct Report<'a> {
    /// The findings model.
    pub assessment: &'a Assessment,
    /// The signer's key id.
    pub key_id: String,
    /// Whether the pack was signed with a throwaway key.
    pub throwaway_key: bool,
    /// When the collection was made.
    pub collected_at: String,
    /// Per control, grouped by framework in catalog order.
    pub controls: Vec<ControlSection>,
    /// Per tier.
    pub tiers: Vec<TierSection>,
    /// The latency chart as inline SVG (given to templates as `chart`,
    /// marked safe).
    #[serde(skip)]
    pub latency_chart_svg: String,
    /// Drift by class.
    pub drift: Vec<DriftSection>,
    /// Connectors.
    pub connectors: Vec<ConnectorRow>,
    /// Snapshots.
    pub snapshots: Vec<SnapshotRow>,
    /// Inputs with digests.
    pub inputs: &'a [InputFile],
    /// Anomalies in the inputs.
    pub anomalies: &'a [Anomaly],
    /// Sync-log statistics.
    pub events: &'a crate::reconcile::model::EventStats,
    /// Quarantined lines.
    pub rejected: &'a [crate::ingest::Rejected],
}

fn fmt_span(s: Option<Span>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| s.to_string())
}

fn drift_title(c: DriftClass) -> &'static str {
    match c {
        DriftClass::NotRevoked => "Not revoked: no longer desired, still effective",
        DriftClass::Unauthorized => "Unauthorized: effective, never approved",
        DriftClass::OrphanAccount => "Orphan accounts: no identity behind them",
        DriftClass::ExpiredStillEffective => "Expired but still effective",
        DriftClass::NotProvisioned => "Not provisioned: approved, absent in the target",
        DriftClass::MissedEvent => "Missed events: drift no logged change explains",
    }
}

/// Tiers from strictest to most lenient (shortest sync target first).
fn tier_order(tiers: &BTreeMap<String, TierTargets>) -> Vec<(&String, &TierTargets)> {
    let mut v: Vec<_> = tiers.iter().collect();
    v.sort_by(|a, b| {
        (a.1.max_sync_latency, a.1.revocation_window, a.0).cmp(&(
            b.1.max_sync_latency,
            b.1.revocation_window,
            b.0,
        ))
    });
    v
}

impl<'a> Report<'a> {
    /// Builds the report model.
    pub fn new(
        r: &'a Reconciled,
        pack: &CompiledPack,
        assessment: &'a Assessment,
        key_id: &str,
        throwaway_key: bool,
    ) -> Self {
        let controls = control_sections(&pack.catalog, assessment);
        let summary = summarise(r);
        let used_tiers: BTreeSet<&str> = r.applications.iter().map(|a| a.tier.as_str()).collect();
        let mut tiers = Vec::new();
        for (name, t) in tier_order(&pack.tiers) {
            if !used_tiers.contains(name.as_str()) {
                continue;
            }
            let s = summary.tiers.get(name).cloned().unwrap_or_default();
            let fig = |l: &LatencyStats, target: Span| LatencyFigures {
                count: l.count,
                median: fmt_span(l.median),
                p95: fmt_span(l.p95),
                max: fmt_span(l.max),
                target: target.to_string(),
                over_target: l.max.is_some_and(|m| m > target),
            };
            tiers.push(TierSection {
                name: name.clone(),
                targets: BTreeMap::from([
                    (
                        "max_sync_latency".to_owned(),
                        t.max_sync_latency.to_string(),
                    ),
                    (
                        "revocation_window".to_owned(),
                        t.revocation_window.to_string(),
                    ),
                    ("max_grant_age".to_owned(), t.max_grant_age.to_string()),
                    (
                        "heartbeat_window".to_owned(),
                        t.heartbeat_window.to_string(),
                    ),
                    (
                        "max_snapshot_age".to_owned(),
                        t.max_snapshot_age.to_string(),
                    ),
                ]),
                confirmed: s.confirmed,
                failed: s.failed,
                pending: s.pending,
                sync: fig(&s.sync_latency, t.max_sync_latency),
                revocation: fig(&s.revocation_latency, t.revocation_window),
            });
        }
        let latency_chart_svg = latency_chart(&pack.tiers, &summary.tiers, &used_tiers);
        let drift = DriftClass::ALL
            .iter()
            .map(|c| DriftSection {
                class: c.as_str().to_owned(),
                title: drift_title(*c).to_owned(),
                records: r.drift.iter().filter(|d| d.class == *c).cloned().collect(),
            })
            .collect();
        let conn_status: BTreeMap<String, String> = assessment
            .findings
            .iter()
            .filter_map(|f| {
                let c = f.subject.connector.clone()?;
                Some((c, f.policy_id.trim_start_matches("connector-").to_owned()))
            })
            .collect();
        let app_tier = r.tier_by_application();
        let connectors = r
            .connectors
            .iter()
            .map(|c| {
                let tier = c
                    .applications
                    .iter()
                    .filter_map(|a| app_tier.get(a.as_str()))
                    .filter_map(|t| pack.tiers.get(*t).map(|x| (x.heartbeat_window, *t)))
                    .min()
                    .map(|(_, t)| t.to_owned())
                    .unwrap_or_default();
                ConnectorRow {
                    heartbeat_window: pack
                        .tiers
                        .get(&tier)
                        .map(|t| t.heartbeat_window.to_string())
                        .unwrap_or_default(),
                    status: conn_status
                        .get(&c.id)
                        .cloned()
                        .unwrap_or_else(|| "ok".into()),
                    tier,
                    health: c.clone(),
                }
            })
            .collect();
        let snapshots = r
            .snapshots
            .iter()
            .map(|s| {
                let tier = app_tier.get(s.application.as_str()).copied().unwrap_or("");
                let max = pack.tiers.get(tier).map(|t| t.max_snapshot_age);
                SnapshotRow {
                    application: s.application.clone(),
                    tier: tier.to_owned(),
                    format: s.format.clone(),
                    taken_at: format_timestamp(&s.taken_at),
                    age: s.age.to_string(),
                    max_age: fmt_span(max),
                    stale: max.is_some_and(|m| s.age > m),
                }
            })
            .collect();
        Report {
            assessment,
            key_id: key_id.to_owned(),
            throwaway_key,
            collected_at: format_timestamp(&r.collected_at),
            controls,
            tiers,
            latency_chart_svg,
            drift,
            connectors,
            snapshots,
            inputs: &r.inputs,
            anomalies: &r.anomalies,
            events: &r.events,
            rejected: &r.rejected,
        }
    }
}

fn control_sections(catalog: &Catalog, a: &Assessment) -> Vec<ControlSection> {
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for p in &a.policies {
        claimed.extend(p.controls.iter().map(String::as_str));
    }
    // Frameworks in catalog order, controls in catalog id order.
    let framework_rank: BTreeMap<&str, usize> = catalog
        .frameworks
        .keys()
        .enumerate()
        .map(|(i, f)| (f.as_str(), i))
        .collect();
    let mut ids: Vec<&str> = claimed.into_iter().collect();
    ids.sort_by_key(|id| {
        let fw = catalog.get(id).map(|c| c.framework.as_str()).unwrap_or("");
        (framework_order(fw, &framework_rank), natural_key(id))
    });
    ids.into_iter()
        .map(|id| {
            let control = catalog.get(id);
            let policies: Vec<PolicyResult> = a
                .policies
                .iter()
                .filter(|p| p.controls.iter().any(|c| c == id))
                .cloned()
                .collect();
            let findings: Vec<FindingLine> = a
                .findings
                .iter()
                .filter(|f| f.controls.iter().any(|c| c == id))
                .map(|f| FindingLine {
                    policy_id: f.policy_id.clone(),
                    severity: f.severity,
                    subject: f.subject.id.clone(),
                    facts: f.facts.clone(),
                    evidence: f.evidence.iter().map(|e| e.location()).collect(),
                    excepted_by: f.exception.as_ref().map(|x| x.id.clone()),
                })
                .collect();
            let open = findings.iter().filter(|f| f.excepted_by.is_none()).count();
            let tested = policies.iter().any(|p| p.evaluated > 0);
            let verdict = if open > 0 {
                ControlVerdict::NotSatisfied
            } else if !findings.is_empty() {
                ControlVerdict::SatisfiedWithExceptions
            } else if tested {
                ControlVerdict::Satisfied
            } else {
                ControlVerdict::NotTested
            };
            ControlSection {
                id: id.to_owned(),
                title: control.map(|c| c.title.clone()).unwrap_or_default(),
                framework: control
                    .and_then(|c| catalog.frameworks.get(&c.framework))
                    .map(|f| f.title.clone())
                    .unwrap_or_default(),
                csf_1_1: control.map(|c| c.csf_1_1.clone()).unwrap_or_default(),
                verdict,
                policies,
                findings,
            }
        })
        .collect()
}

/// OWASP NHI first, then CSF 2.0, then SP 800-53, then anything else.
fn framework_order(fw: &str, rank: &BTreeMap<&str, usize>) -> (usize, usize) {
    let fixed = if fw.starts_with("owasp-nhi") {
        0
    } else if fw.starts_with("nist-csf") {
        1
    } else if fw.starts_with("nist-sp-800-53") {
        2
    } else {
        3
    };
    (fixed, rank.get(fw).copied().unwrap_or(usize::MAX))
}

/// Sorts `NHI10:2025` after `NHI9:2025` and `AC-2(10)` after `AC-2(3)`.
fn natural_key(id: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in id.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() || !text.is_empty() {
                out.push((std::mem::take(&mut text), digits.parse().unwrap_or(0)));
                digits.clear();
            }
            text.push(c);
        }
    }
    out.push((text, digits.parse().unwrap_or(0)));
    out
}

/// Horizontal bars per tier: median, p95 and maximum latency as a share of
/// the tier's target, with the target drawn as a line. Inline SVG: no assets.
fn latency_chart(
    targets: &BTreeMap<String, TierTargets>,
    figures: &BTreeMap<String, crate::reconcile::summary::TierChanges>,
    used: &BTreeSet<&str>,
) -> String {
    struct Row {
        label: String,
        bars: [(String, Option<Span>); 3],
        target: Span,
    }
    let mut rows = Vec::new();
    for (name, t) in tier_order(targets) {
        if !used.contains(name.as_str()) {
            continue;
        }
        let Some(f) = figures.get(name) else {
            continue;
        };
        for (kind, l, target) in [
            ("sync", &f.sync_latency, t.max_sync_latency),
            ("revocation", &f.revocation_latency, t.revocation_window),
        ] {
            rows.push(Row {
                label: format!("{name} {kind} (n={})", l.count),
                bars: [
                    ("median".into(), l.median),
                    ("p95".into(), l.p95),
                    ("max".into(), l.max),
                ],
                target,
            });
        }
    }
    // Scale: the target sits at 40% of the width unless something is over
    // 2.5× the target, in which case everything shrinks to fit.
    let ratio = |v: Span, t: Span| v.as_millis() as f64 / (t.as_millis().max(1)) as f64;
    let worst = rows
        .iter()
        .flat_map(|r| {
            r.bars
                .iter()
                .filter_map(|b| b.1.map(|v| ratio(v, r.target)))
        })
        .fold(2.5_f64, f64::max);
    let (label_w, plot_w, row_h, bar_h) = (190.0, 420.0, 54.0, 12.0);
    let height = 30.0 + row_h * rows.len() as f64;
    let width = label_w + plot_w + 90.0;
    let x_of = |r: f64| label_w + plot_w * (r / worst).min(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Change latency per tier against its target" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r##"<text x="{label_w}" y="14" fill="#333">latency as a share of the tier's target (line = target)</text>"##
    );
    for (i, row) in rows.iter().enumerate() {
        let y0 = 26.0 + row_h * i as f64;
        let _ = write!(
            svg,
            r##"<text x="0" y="{:.1}" fill="#111">{}</text>"##,
            y0 + 20.0,
            escape(&row.label)
        );
        for (j, (name, value)) in row.bars.iter().enumerate() {
            let y = y0 + 4.0 + (bar_h + 3.0) * j as f64;
            match value {
                Some(v) => {
                    let r = ratio(*v, row.target);
                    let colour = if r > 1.0 { "#c0392b" } else { "#2e7d32" };
                    let _ = write!(
                        svg,
                        r##"<rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{bar_h}" fill="{colour}" opacity="{}"/><text x="{:.1}" y="{:.1}" fill="#111">{name} {v}</text>"##,
                        (x_of(r) - label_w).max(1.0),
                        ["0.55", "0.75", "1"][j],
                        x_of(r) + 4.0,
                        y + bar_h - 2.0
                    );
                }
                None => {
                    let _ = write!(
                        svg,
                        r##"<text x="{label_w}" y="{:.1}" fill="#777">{name}: no confirmed changes</text>"##,
                        y + bar_h - 2.0
                    );
                }
            }
        }
        let tx = x_of(1.0);
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="3,2"/><text x="{tx:.1}" y="{:.1}" fill="#000" font-size="9">target {}</text>"##,
            y0 + 2.0,
            y0 + 50.0,
            y0 + 2.0,
            row.target
        );
    }
    svg.push_str("</svg>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_of_control_ids() {
        let mut ids = vec![
            "NHI10:2025",
            "NHI2:2025",
            "NHI1:2025",
            "AC-2(10)",
            "AC-2(3)",
            "AC-2",
        ];
        ids.sort_by_key(|i| natural_key(i));
        assert_eq!(
            ids,
            vec![
                "AC-2",
                "AC-2(3)",
                "AC-2(10)",
                "NHI1:2025",
                "NHI2:2025",
                "NHI10:2025"
            ]
        );
    }
}
