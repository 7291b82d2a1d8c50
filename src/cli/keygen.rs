//! `syncproof keygen` (placeholder until the evidence work lands).

use super::ExitCode;

/// Arguments of `syncproof keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write the key pair into.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Runs `syncproof keygen`.
pub(crate) fn run(_args: &KeygenArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("keygen is not built yet"))
}
