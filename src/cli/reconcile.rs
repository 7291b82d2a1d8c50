//! `syncproof reconcile`: print the reconciled state of a collection.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{write_stdout, ExitCode, OutputFormat};
use crate::reconcile::summary::summarise;
use crate::reconcile::Reconciled;
use crate::time::format_timestamp;

/// Arguments of `syncproof reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The collection directory (holding `collection.yaml`).
    pub collection: PathBuf,
    #[command(flatten)]
    pub common: super::CollectionArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Runs `syncproof reconcile`. Neither format holds the whole reconciled
/// state: the text needs only counts and drift, and the JSON is written
/// while each list is produced (see `reconcile::json`).
pub(crate) fn run(args: &ReconcileArgs) -> miette::Result<ExitCode> {
    let prepared = super::prepare(&args.collection, &args.common)?;
    match args.format {
        OutputFormat::Json => prepared.write_json(&mut super::stdout())?,
        OutputFormat::Text => write_stdout(render_text(&prepared.counted()?).as_bytes())?,
    }
    Ok(ExitCode::Clean)
}

/// The reconciled state for a person: counts, drift, connectors and
/// snapshots (the changes and grants are counted, not listed).
pub(crate) fn render_text(r: &Reconciled) -> String {
    let s = summarise(r);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "collection `{}` reconciled as of {} ({} changes, {} effective grants, {} drift records)",
        r.collection,
        format_timestamp(&r.as_of),
        r.change_figures.iter().map(|(_, f)| f.len()).sum::<usize>(),
        r.snapshots.iter().map(|s| s.grants).sum::<usize>(),
        r.drift.len()
    );
    let _ = writeln!(
        o,
        "\nsync log: {} events read, {} unique, {} replays counted once, {} re-deliveries, {} after as-of",
        r.events.read, r.events.unique, r.events.replays, r.events.redeliveries, r.events.after_as_of
    );
    if !r.rejected.is_empty() {
        let _ = writeln!(o, "\nquarantined log lines ({}):", r.rejected.len());
        for q in &r.rejected {
            let _ = writeln!(o, "  {}:{}: {}", q.file, q.line, q.reason);
        }
    }
    let _ = writeln!(o, "\nchanges:");
    for (status, n) in &s.changes {
        let _ = writeln!(o, "  {status:<10} {n}");
    }
    let _ = writeln!(o, "\nper tier (latency: median / p95 / max):");
    for (tier, t) in &s.tiers {
        let fmt = |l: &crate::reconcile::summary::LatencyStats| match (l.median, l.p95, l.max) {
            (Some(m), Some(p), Some(x)) => format!("{m} / {p} / {x} (n={})", l.count),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            o,
            "  {tier:<9} confirmed {}, failed {}, pending {}; sync {}; revocation {}",
            t.confirmed,
            t.failed,
            t.pending,
            fmt(&t.sync_latency),
            fmt(&t.revocation_latency)
        );
    }
    let _ = writeln!(o, "\ndrift:");
    for (class, n) in &s.drift {
        let _ = writeln!(o, "  {class:<24} {n}");
    }
    let _ = writeln!(o, "\nper application:");
    for (app, a) in &s.applications {
        let drift: Vec<String> = a.drift.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            o,
            "  {app:<16} tier {:<9} {} accounts, {} grants{}",
            a.tier,
            a.accounts,
            a.grants,
            if drift.is_empty() {
                String::new()
            } else {
                format!("; drift: {}", drift.join(", "))
            }
        );
    }
    if !r.drift.is_empty() {
        let _ = writeln!(o, "\ndrift records:");
        for d in &r.drift {
            let at = d
                .evidence
                .first()
                .map(|e| format!(" [{}:{}]", e.file, e.line))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:<24} {:<14} {}{at}",
                d.class.as_str(),
                d.application,
                d.detail
            );
        }
    }
    let _ = writeln!(o, "\nconnectors:");
    for c in &r.connectors {
        let _ = writeln!(
            o,
            "  {:<16} last seen {}, silent {}, {} errors{}, {} failed attempts, {} pending, {} failed",
            c.id,
            c.last_seen.map(|t| format_timestamp(&t)).unwrap_or_else(|| "never".into()),
            c.silence.map(|s| s.to_string()).unwrap_or_else(|| "always".into()),
            c.errors,
            c.last_error_at
                .map(|t| format!(" (last {})", format_timestamp(&t)))
                .unwrap_or_default(),
            c.failed_attempts,
            c.pending_changes,
            c.failed_changes
        );
    }
    let _ = writeln!(o, "\nsnapshots:");
    for snap in &r.snapshots {
        let _ = writeln!(
            o,
            "  {:<16} {} taken {}, age {}",
            snap.application,
            snap.format,
            format_timestamp(&snap.taken_at),
            snap.age
        );
    }
    if !r.anomalies.is_empty() {
        let _ = writeln!(o, "\nanomalies:");
        for a in &r.anomalies {
            let _ = writeln!(o, "  {}: {}", a.kind.as_str(), a.detail);
        }
    }
    o
}
