//! `syncproof generate`: write a synthetic collection of a given size, with
//! planted violations and their ground truth beside it.

use std::path::PathBuf;

use super::{write_stdout, ExitCode};
use crate::generate::{generate, Options};

/// Arguments of `syncproof generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The collection directory to create (must not exist, or be empty). The
    /// ground truth is written beside it, as `<DIR>.truth.json`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Sync-log lines to write, replays and re-deliveries included.
    #[arg(long, value_name = "N")]
    pub events: u64,
    /// Identities in the desired state [default: events / 10].
    #[arg(long, value_name = "N")]
    pub identities: Option<u32>,
    /// Applications, one connector each [default: identities / 50].
    #[arg(long, value_name = "N")]
    pub applications: Option<u32>,
    /// Seed of every random choice: the same arguments and seed give the
    /// same bytes.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

/// Runs `syncproof generate`.
pub(crate) fn run(args: &GenerateArgs) -> miette::Result<ExitCode> {
    let identities = args
        .identities
        .unwrap_or_else(|| u32::try_from(args.events / 10).unwrap_or(u32::MAX).max(1));
    let applications = args.applications.unwrap_or((identities / 50).max(1));
    let options = Options {
        events: args.events,
        identities,
        applications,
        seed: args.seed,
    };
    let summary = generate(&args.out, &options)?;
    let t = &summary.truth;
    let line = format!(
        "wrote `{}`: {} events, {} identities, {} applications; {} planted findings in `{}`\n",
        args.out.display(),
        t.events,
        identities,
        applications,
        t.findings.len(),
        summary.truth_path.display()
    );
    write_stdout(line.as_bytes())?;
    Ok(ExitCode::Clean)
}
