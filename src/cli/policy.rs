//! `syncproof policy list|validate`: inspect the policy pack.

use std::fmt::Write as _;

use super::{write_stdout, ExitCode, PolicyArgs};

/// The `policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// List every policy with its severity, the subjects it applies to and its
    /// controls.
    List(PolicyArgs),
    /// Validate the policies strictly against the schema and check every
    /// annotation; exit 2 with file and line on any problem.
    Validate(PolicyArgs),
}

/// Runs a `policy` subcommand.
pub(crate) fn run(cmd: &PolicyCommand) -> miette::Result<ExitCode> {
    match cmd {
        PolicyCommand::Validate(args) => {
            let pack = args.compile()?;
            let forbids = pack.meta.values().filter(|m| m.effect == "forbid").count();
            write_stdout(
                format!(
                    "valid: {} policies ({forbids} forbid), {} tiers, {} controls{}\n",
                    pack.meta.len(),
                    pack.tiers.len(),
                    pack.catalog.controls.len(),
                    args.policies
                        .as_ref()
                        .map(|d| format!(", with `{}` overlaid", d.display()))
                        .unwrap_or_default()
                )
                .as_bytes(),
            )?;
            Ok(ExitCode::Clean)
        }
        PolicyCommand::List(args) => {
            let pack = args.compile()?;
            let mut out = String::new();
            for m in pack.meta.values() {
                let kinds: Vec<&str> = m.actions.iter().map(|k| k.as_str()).collect();
                let _ = writeln!(
                    out,
                    "{:<24} {:<8} {:<10} {}",
                    m.id,
                    m.severity.map(|s| s.as_str()).unwrap_or(m.effect.as_str()),
                    kinds.join(","),
                    m.title
                );
                if !m.controls.is_empty() {
                    let titled: Vec<String> = m
                        .controls
                        .iter()
                        .map(|c| match pack.catalog.get(c) {
                            Some(ctl) => {
                                let mut s = format!("{c} ({})", short(&ctl.title));
                                if !ctl.csf_1_1.is_empty() {
                                    s.push_str(&format!(" [CSF 1.1: {}]", ctl.csf_1_1.join(", ")));
                                }
                                s
                            }
                            None => c.clone(),
                        })
                        .collect();
                    let _ = writeln!(out, "{:<24} controls: {}", "", titled.join("; "));
                }
                let _ = writeln!(out, "{:<24} source: {}:{}", "", m.file, m.line);
            }
            write_stdout(out.as_bytes())?;
            Ok(ExitCode::Clean)
        }
    }
}

/// A title cut to a readable length.
fn short(title: &str) -> String {
    if title.chars().count() <= 60 {
        title.to_owned()
    } else {
        let cut: String = title.chars().take(57).collect();
        format!("{cut}...")
    }
}
