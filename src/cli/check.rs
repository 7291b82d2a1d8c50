//! `syncproof check`: the CI gate. Evaluates the policies over a collection
//! and exits 1 when any finding is at or above `--fail-on`.

use std::path::PathBuf;

use super::{write_stdout, ExitCode};
use crate::evidence::assessment::{Assessment, Verdict};
use crate::policy::Severity;

/// Output formats of `check`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// For a person in a terminal or a CI log.
    #[default]
    Text,
    /// The findings model as JSON.
    Json,
}

/// Arguments of `syncproof check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The collection directory (holding `collection.yaml`).
    pub collection: PathBuf,
    #[command(flatten)]
    pub common: super::CollectionArgs,
    #[command(flatten)]
    pub policy: super::PolicyArgs,
    #[command(flatten)]
    pub exceptions: super::ExceptionArgs,
    /// Fail (exit 1) when a finding is at or above this severity.
    #[arg(long, value_enum, default_value_t = Severity::Low)]
    pub fail_on: Severity,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

/// Runs `syncproof check`.
pub(crate) fn run(args: &CheckArgs) -> miette::Result<ExitCode> {
    let mut progress = super::progress::Progress::new(args.common.timings);
    progress.phase("compiling policies");
    let pack = args.policy.compile()?;
    progress.phase("reading and reconciling the collection");
    let reconciled = super::load_and_reconcile(&args.collection, &args.common)?;
    progress.phase("evaluating policies");
    let mut eval = crate::policy::evaluate(
        &reconciled,
        &pack,
        crate::policy::EvaluateOptions::default(),
    )?;
    progress.phase("applying exceptions");
    let applied = args
        .exceptions
        .apply(&args.collection, &reconciled, &pack, &mut eval)?;
    progress.phase("rendering");
    let assessment = Assessment::new(&reconciled, &pack, &eval, applied.reports, args.fail_on);
    let bytes = match args.format {
        CheckFormat::Json => assessment
            .to_json()
            .map_err(|e| miette::miette!("cannot serialise the findings: {e}"))?
            .into_bytes(),
        CheckFormat::Text => {
            let mut out = Vec::new();
            crate::evidence::text::render(&assessment, &mut out)
                .map_err(|e| miette::miette!("cannot render the report: {e}"))?;
            out
        }
    };
    progress.finish(Some(eval.cedar_time));
    write_stdout(&bytes)?;
    Ok(match assessment.verdict {
        Verdict::Pass => ExitCode::Clean,
        Verdict::Fail => ExitCode::Failed,
    })
}
