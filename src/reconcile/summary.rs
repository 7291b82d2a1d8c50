//! Figures over the reconciled state: counts per drift class, application and
//! tier, change outcomes, and latency percentiles per tier. Shared by the
//! `reconcile` command and the evidence reports.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{ChangeStatus, Reconciled};
use crate::time::Span;

/// Latency figures for a set of confirmed changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencyStats {
    /// Confirmed changes measured.
    pub count: usize,
    /// Median (nearest rank).
    pub median: Option<Span>,
    /// 95th percentile (nearest rank).
    pub p95: Option<Span>,
    /// Maximum.
    pub max: Option<Span>,
}

impl LatencyStats {
    /// Figures over `values` (any order).
    pub fn of(mut values: Vec<Span>) -> Self {
        values.sort_unstable();
        let rank = |p: f64| -> Option<Span> {
            if values.is_empty() {
                return None;
            }
            // Nearest-rank percentile: the smallest value with at least p% of
            // values at or below it.
            let n = values.len();
            let k = ((p / 100.0) * n as f64).ceil() as usize;
            values.get(k.clamp(1, n) - 1).copied()
        };
        LatencyStats {
            count: values.len(),
            median: rank(50.0),
            p95: rank(95.0),
            max: values.last().copied(),
        }
    }
}

/// Change outcomes and latency for one tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TierChanges {
    /// Confirmed changes.
    pub confirmed: usize,
    /// Failed changes.
    pub failed: usize,
    /// Pending changes.
    pub pending: usize,
    /// Latency of confirmed changes that add or change access.
    pub sync_latency: LatencyStats,
    /// Latency of confirmed removals.
    pub revocation_latency: LatencyStats,
}

/// Counts for one application.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppCounts {
    /// The application's tier.
    pub tier: String,
    /// Accounts in its snapshot.
    pub accounts: usize,
    /// Effective grants.
    pub grants: usize,
    /// Drift records by class.
    pub drift: BTreeMap<String, usize>,
}

/// The figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Changes by status.
    pub changes: BTreeMap<String, usize>,
    /// Drift records by class.
    pub drift: BTreeMap<String, usize>,
    /// Per application.
    pub applications: BTreeMap<String, AppCounts>,
    /// Per tier.
    pub tiers: BTreeMap<String, TierChanges>,
}

/// Computes the figures.
pub fn summarise(r: &Reconciled) -> Summary {
    let mut s = Summary::default();
    for status in [
        ChangeStatus::Confirmed,
        ChangeStatus::Failed,
        ChangeStatus::Pending,
    ] {
        s.changes.insert(status.as_str().to_owned(), 0);
    }
    for class in super::model::DriftClass::ALL {
        s.drift.insert(class.as_str().to_owned(), 0);
    }
    let tier_of = r.tier_by_application();
    for a in &r.applications {
        s.applications.insert(
            a.id.clone(),
            AppCounts {
                tier: a.tier.clone(),
                ..AppCounts::default()
            },
        );
        s.tiers.entry(a.tier.clone()).or_default();
    }
    let mut sync: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    let mut revoke: BTreeMap<&str, Vec<Span>> = BTreeMap::new();
    for (app, figures) in &r.change_figures {
        let tier = tier_of.get(app.as_str()).copied().unwrap_or("");
        for c in figures {
            *s.changes.entry(c.status.as_str().to_owned()).or_default() += 1;
            let t = s.tiers.entry(tier.to_owned()).or_default();
            match c.status {
                ChangeStatus::Confirmed => t.confirmed += 1,
                ChangeStatus::Failed => t.failed += 1,
                ChangeStatus::Pending => t.pending += 1,
            }
            if let Some(l) = c.latency {
                if c.removal {
                    revoke.entry(tier).or_default().push(l);
                } else {
                    sync.entry(tier).or_default().push(l);
                }
            }
        }
    }
    for (tier, v) in sync {
        s.tiers.entry(tier.to_owned()).or_default().sync_latency = LatencyStats::of(v);
    }
    for (tier, v) in revoke {
        s.tiers
            .entry(tier.to_owned())
            .or_default()
            .revocation_latency = LatencyStats::of(v);
    }
    for d in &r.drift {
        *s.drift.entry(d.class.as_str().to_owned()).or_default() += 1;
        if let Some(a) = s.applications.get_mut(&d.application) {
            *a.drift.entry(d.class.as_str().to_owned()).or_default() += 1;
        }
    }
    // Counted when each snapshot was reconciled: the grant and account lists
    // themselves need not be held to summarise them.
    for snap in &r.snapshots {
        if let Some(a) = s.applications.get_mut(&snap.application) {
            a.accounts += snap.accounts;
            a.grants += snap.grants;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Span> = (1..=20).map(|m| Span::from_millis(m * 60_000)).collect();
        let s = LatencyStats::of(v);
        assert_eq!(s.count, 20);
        assert_eq!(s.median.unwrap().to_string(), "10m");
        assert_eq!(s.p95.unwrap().to_string(), "19m");
        assert_eq!(s.max.unwrap().to_string(), "20m");
        let one = LatencyStats::of(vec![Span::from_millis(5)]);
        assert_eq!(one.median, one.max);
        assert_eq!(LatencyStats::of(vec![]).median, None);
    }
}
