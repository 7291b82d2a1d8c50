//! `syncproof verify` (placeholder until the evidence work lands).

use super::ExitCode;

/// Arguments of `syncproof verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The pack directory.
    pub pack: std::path::PathBuf,
}

/// Runs `syncproof verify`.
pub(crate) fn run(_args: &VerifyArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("verify is not built yet"))
}
