//! `syncproof verify`: checks a signed evidence pack against a pinned public
//! key, and optionally against the collection it was made from.
//!
//! Input: `PACK --pubkey KEY.pub [--collection DIR]`. Output: one verdict
//! line on stdout (exit 0), or the verdict plus one line per problem on
//! stdout (exit 1). Usage errors (unreadable or invalid key, PACK not a
//! directory) are diagnostics on stderr (exit 2). The checks live in
//! [`crate::evidence::verify`]; this file only wires them.

use std::path::PathBuf;

use super::{note, write_stdout, ExitCode};
use crate::evidence::keys::PublicKey;
use crate::evidence::verify::{verify, VerifyFailure};

/// Arguments of `syncproof verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The pack directory.
    pub pack: PathBuf,
    /// The signer's public key (SPKI PEM), obtained out of band.
    #[arg(long, value_name = "KEY.pub")]
    pub pubkey: PathBuf,
    /// Also re-hash the collection files the manifest lists, under this
    /// directory.
    #[arg(long, value_name = "DIR")]
    pub collection: Option<PathBuf>,
}

/// Runs `syncproof verify`.
pub(crate) fn run(args: &VerifyArgs) -> miette::Result<ExitCode> {
    let key = PublicKey::from_pem_file(&args.pubkey)?;
    require_dir("pack", &args.pack)?;
    if let Some(dir) = &args.collection {
        require_dir("collection", dir)?;
    }
    let pack = args.pack.display();
    let text = match verify(&args.pack, &key, args.collection.as_deref()) {
        Ok(verified) => {
            let text = format!(
                "verified: {pack} — {} files, signed by key {}, as of {}\n",
                verified.file_count(),
                verified.key_id(),
                verified.as_of()
            );
            write_stdout(escape_controls(&text).as_bytes())?;
            return Ok(ExitCode::Clean);
        }
        Err(failure) => {
            if !failure.signature_valid {
                note(
                    "note: manifest.json is not authenticated by the given key; \
                     file problems listed were found against an untrusted manifest",
                );
            }
            failure_text(&pack.to_string(), &key, &failure)
        }
    };
    write_stdout(escape_controls(&text).as_bytes())?;
    Ok(ExitCode::Failed)
}

/// The verdict and one line per problem.
fn failure_text(pack: &str, key: &PublicKey, failure: &VerifyFailure) -> String {
    let mut text = format!(
        "verification failed: {pack} — {} problem(s) with key {}\n",
        failure.problems.len(),
        key.key_id()
    );
    for problem in &failure.problems {
        text.push_str(&format!("{}: {problem}\n", problem.code()));
    }
    text
}

/// Fails with a usage error unless `path` is a directory.
fn require_dir(what: &str, path: &std::path::Path) -> miette::Result<()> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(miette::miette!(
            code = "syncproof::verify::not_a_directory",
            "{what} `{}` is not a directory",
            path.display()
        ))
    }
}

/// Escapes control characters (other than line ends) so names taken from an
/// untrusted pack cannot inject terminal escape sequences.
fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let keep = c == '\n' || !c.is_control();
            let escaped: Vec<char> = if keep {
                vec![c]
            } else {
                c.escape_debug().collect()
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\n");
        assert_eq!(escape_controls("plain — ünï\n"), "plain — ünï\n");
    }
}
