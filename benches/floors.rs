//! Benchmark floors: what the hardware and the libraries allow, measured on
//! the same collection as the end-to-end runs, so `scripts/bench.sh` can report
//! syncproof's throughput as a ratio of them.
//!
//! Usage: `cargo bench --bench floors -- COLLECTION` (the collection made by
//! `syncproof generate`). Prints `key=value` lines:
//! - `jsonl_lines_per_s`: serde_json alone parsing every sync-log line into a
//!   typed event (envelope plus payload fields), one thread;
//! - `cedar_naive_per_s`, `cedar_per_action_per_s`, `cedar_sliced_per_s`:
//!   Cedar's bare `is_authorized` on prebuilt requests of the largest
//!   application, against the whole shipped policy set, against the
//!   per-action sets, and against the guard-sliced sets `evaluate` uses, one
//!   thread; `cedar_direct_per_s`: the sliced sets decided as `evaluate`
//!   decides them, through the authorizer `cedar_policy` wraps (the request
//!   and its context built in the call); `cedar_policies_per_request_*`: the
//!   average size of those sets;
//! - `sha256_mb_per_s`: SHA-256 over the logs, one thread.
//!
//! A benchmark, never a test: nothing here asserts a time.

#![allow(missing_docs, reason = "benchmark binary")]
#![expect(
    clippy::disallowed_macros,
    reason = "a benchmark binary reports on stdout; the print ban is for library stages"
)]

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

#[derive(Deserialize)]
#[expect(dead_code, reason = "fields exist to be parsed")]
struct FloorEvent {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    time: String,
    #[serde(default)]
    datacontenttype: Option<String>,
    data: FloorData,
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "fields exist to be parsed")]
struct FloorData {
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    application: Option<String>,
    #[serde(default)]
    entitlement: Option<String>,
    #[serde(default)]
    requester: Option<String>,
    #[serde(default)]
    approval: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    batch: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    connector: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(root) = std::env::args().skip(1).find(|a| !a.starts_with("--")) else {
        eprintln!("usage: cargo bench --bench floors -- COLLECTION");
        return Ok(());
    };
    let root = PathBuf::from(root);
    let collection = syncproof::ingest::load(&root)?;

    // serde_json alone over the same lines.
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let started = Instant::now();
    for log in &collection.sync_logs {
        let file = std::io::BufReader::new(std::fs::File::open(root.join(log))?);
        for line in file.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            bytes += line.len() as u64;
            let _: FloorEvent = serde_json::from_str(&line)?;
            lines += 1;
        }
    }
    let parse = started.elapsed();
    println!("jsonl_lines={lines}");
    println!(
        "jsonl_lines_per_s={:.0}",
        lines as f64 / parse.as_secs_f64()
    );

    // SHA-256 over the same bytes (read again; page cache is warm).
    let started = Instant::now();
    let mut hashed = 0u64;
    for log in &collection.sync_logs {
        let (size, _) = syncproof::ingest::digest::file_sha256(&root.join(log))?;
        hashed += size;
    }
    println!(
        "sha256_mb_per_s={:.0}",
        hashed as f64 / 1e6 / started.elapsed().as_secs_f64()
    );
    let _ = bytes;

    // Cedar's bare rate.
    let reconciled = syncproof::reconcile::run(collection, &Default::default())?;
    let pack = syncproof::policy::PolicyPack::builtin().compile()?;
    let floor = syncproof::policy::cedar_floor(&reconciled, &pack, 20)?;
    println!("cedar_requests={}", floor.requests);
    println!("cedar_naive_per_s={:.0}", floor.naive_per_second);
    println!("cedar_per_action_per_s={:.0}", floor.per_action_per_second);
    println!("cedar_sliced_per_s={:.0}", floor.sliced_per_second);
    println!("cedar_direct_per_s={:.0}", floor.direct_per_second);
    let [whole, per_action, sliced] = floor.policies_per_request;
    println!("cedar_policies_per_request_naive={whole:.2}");
    println!("cedar_policies_per_request_per_action={per_action:.2}");
    println!("cedar_policies_per_request_sliced={sliced:.2}");
    Ok(())
}
