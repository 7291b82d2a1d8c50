//! `syncproof check`: the CI gate. Evaluates the policies over a collection
//! and exits 1 when any finding is at or above `--fail-on`. The report —
//! text, JSON, SARIF, JUnit XML or OSCAL — is written in every case, so a CI
//! step can upload it even when the gate fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ExitCode;
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
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF consumers.
    Sarif,
    /// JUnit XML, for CI test reports (GitLab, Jenkins, ...).
    Junit,
    /// OSCAL Assessment Results 1.1.3 (JSON), for GRC platforms.
    Oscal,
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
    // JUnit lists passing subjects too; the others need only counts.
    let super::Assessed {
        reconciled,
        eval,
        applied,
    } = super::assess(
        &args.collection,
        &args.common,
        &pack,
        &args.exceptions,
        args.format == CheckFormat::Junit,
        &mut progress,
    )?;
    progress.phase("rendering");
    let assessment = Assessment::new(&reconciled, &pack, &eval, applied.reports, args.fail_on);
    let code = match assessment.verdict {
        Verdict::Pass => ExitCode::Clean,
        Verdict::Fail => ExitCode::Failed,
    };
    // JUnit lists every (policy, subject) pair, hundreds of MB on a large
    // collection: it goes to stdout as it is rendered. The other formats are
    // rendered whole, then written.
    let mut stdout = super::stdout();
    let mut buffer = Vec::new();
    let mut out: &mut dyn Write = if args.format == CheckFormat::Junit {
        &mut stdout
    } else {
        &mut buffer
    };
    match args.format {
        CheckFormat::Json => assessment.write_json(out).map_err(|e| {
            if e.is_io() {
                miette::miette!("cannot write the findings: {e}")
            } else {
                miette::miette!("cannot serialise the findings: {e}")
            }
        })?,
        CheckFormat::Text => crate::evidence::text::render(&assessment, &mut out)
            .map_err(|e| miette::miette!("cannot render the report: {e}"))?,
        CheckFormat::Sarif => crate::evidence::sarif::render(
            &assessment,
            &pack.catalog,
            &uri_base(&args.collection),
            &mut out,
        )?,
        CheckFormat::Junit => crate::evidence::junit::render(&assessment, &eval, &mut out)?,
        CheckFormat::Oscal => crate::evidence::oscal::render(
            &assessment,
            &reconciled,
            &pack.catalog,
            Some(&pack.tiers),
            &mut out,
        )?,
    }
    progress.finish(Some((eval.eval_time, eval.cedar_time)));
    stdout
        .write_all(&buffer)
        .and_then(|()| stdout.flush())
        .map_err(|e| miette::miette!("cannot write to stdout: {e}"))?;
    Ok(code)
}

/// The prefix SARIF puts before evidence paths: the collection directory as
/// given (relative to the working directory, which CI runs at the repository
/// root), `/`-separated; for an absolute path, a `file://` URI.
fn uri_base(collection: &Path) -> String {
    if collection.is_absolute() {
        return format!(
            "file://{}/",
            collection
                .to_string_lossy()
                .replace('\\', "/")
                .trim_end_matches('/')
        );
    }
    let parts: Vec<String> = collection
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}/", parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_base_of_collection_paths() {
        assert_eq!(uri_base(Path::new("samples")), "samples/");
        assert_eq!(uri_base(Path::new("./samples/")), "samples/");
        assert_eq!(uri_base(Path::new("a/b")), "a/b/");
        assert_eq!(uri_base(Path::new(".")), "");
        assert_eq!(uri_base(Path::new("/x/y")), "file:///x/y/");
    }
}
