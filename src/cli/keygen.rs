//! `syncproof keygen`: writes a new Ed25519 key pair for signing packs.
//!
//! Input: `--out DIR`. Output: `DIR/syncproof.key.pem` (PKCS#8, mode `0600`)
//! and `DIR/syncproof.pub.pem` (SPKI); stdout names the key id and both files.
//! The key logic lives in [`crate::evidence::keys`]; this file only wires it.

use super::{write_stdout, ExitCode};
use crate::evidence::keys;

/// Arguments of `syncproof keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write the key pair into (created if absent; existing keys
    /// are never overwritten).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Runs `syncproof keygen`.
pub(crate) fn run(args: &KeygenArgs) -> miette::Result<ExitCode> {
    let files = keys::keygen(&args.out)?;
    let text = format!(
        "key id: {}\nprivate key: {}\npublic key: {}\n",
        files.key_id,
        files.private_key.display(),
        files.public_key.display()
    );
    write_stdout(text.as_bytes())?;
    Ok(ExitCode::Clean)
}
