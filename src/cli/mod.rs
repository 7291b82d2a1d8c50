//! The command line: clap types, one file per subcommand, and the exit code.
//!
//! Only this module prints. Stages return data; each subcommand wires the
//! stages together and writes what they return to stdout (reports) or stderr
//! (diagnostics).

use std::io::Write;
use std::process::Termination;

use clap::{Parser, Subcommand, ValueEnum};

mod attest;
mod check;
mod generate;
mod keygen;
mod policy;
mod progress;
mod reconcile;
mod verify;

/// The process exit status, following grep and diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: clean; nothing at or above the threshold; a pack verified.
    Clean,
    /// 1: the thing checked is bad: findings at or above the threshold,
    /// or verification failed.
    Failed,
    /// 2: trouble: usage, unreadable or invalid input, I/O.
    Trouble,
}

impl Termination for ExitCode {
    fn report(self) -> std::process::ExitCode {
        std::process::ExitCode::from(match self {
            ExitCode::Clean => 0,
            ExitCode::Failed => 1,
            ExitCode::Trouble => 2,
        })
    }
}

/// How diagnostics on stderr are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    /// Colours and source snippets when stderr is a terminal.
    #[default]
    Human,
    /// No colours, no box drawing: stable for logs.
    Plain,
    /// One JSON object per diagnostic.
    Json,
}

/// Report formats shared by `reconcile` and `check`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For a person in a terminal or a CI log.
    #[default]
    Text,
    /// The serde form of the model.
    Json,
}

/// Options every command that reads a collection takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectionArgs {
    /// Evaluate at this instant (RFC 3339); defaults to the collection's
    /// `collected_at`, never the wall clock.
    #[arg(long, value_parser = parse_as_of)]
    pub as_of: Option<crate::time::Timestamp>,
    /// Set bad sync-log lines aside and list them, instead of failing.
    #[arg(long)]
    pub quarantine: bool,
    /// Print how long each phase took on stderr.
    #[arg(long)]
    pub timings: bool,
}

/// Where approved exceptions come from.
#[derive(Debug, Clone, clap::Args)]
pub struct ExceptionArgs {
    /// An exceptions file to apply instead of the collection's own.
    #[arg(long, value_name = "FILE")]
    pub exceptions: Option<std::path::PathBuf>,
}

/// Exceptions applied to an evaluation: their reports, and the file (name and
/// text) they came from, if any.
pub(crate) struct AppliedExceptions {
    pub(crate) reports: Vec<crate::policy::exceptions::ExceptionReport>,
    pub(crate) file: Option<(String, String)>,
}

impl ExceptionArgs {
    /// Loads the exceptions (from `--exceptions`, else the collection's
    /// file) and marks the findings they cover.
    pub(crate) fn apply(
        &self,
        root: &std::path::Path,
        reconciled: &crate::reconcile::Reconciled,
        pack: &crate::policy::CompiledPack,
        eval: &mut crate::policy::Evaluation,
    ) -> miette::Result<AppliedExceptions> {
        let source = match &self.exceptions {
            Some(path) => Some((
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "exceptions.yaml".into()),
                path.clone(),
            )),
            None => reconciled
                .inputs
                .iter()
                .find(|i| i.kind == "exceptions")
                .map(|i| (i.path.clone(), root.join(&i.path))),
        };
        let Some((name, path)) = source else {
            return Ok(AppliedExceptions {
                reports: Vec::new(),
                file: None,
            });
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| miette::miette!("cannot read `{}`: {e}", path.display()))?;
        let known = pack.meta.keys().cloned().collect();
        let exceptions = crate::policy::exceptions::load(&name, &text, &known)?;
        let reports = crate::policy::exceptions::apply(
            &mut eval.findings,
            &exceptions,
            reconciled.as_of,
            &pack.tiers,
        );
        Ok(AppliedExceptions {
            reports,
            file: Some((name, text)),
        })
    }
}

/// Where the policy pack comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// A policy directory overlaid on the built-in pack: its `*.cedar` files
    /// are added (same name replaces), its `schema.cedarschema`, `tiers.yaml`
    /// and `controls.yaml` replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub policies: Option<std::path::PathBuf>,
}

impl PolicyArgs {
    /// The pack's files, before compilation.
    pub(crate) fn pack(&self) -> miette::Result<crate::policy::PolicyPack> {
        Ok(match &self.policies {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(miette::miette!(
                        "`{}` is not a directory of policies",
                        dir.display()
                    ));
                }
                crate::policy::PolicyPack::with_overlay(dir)?
            }
            None => crate::policy::PolicyPack::builtin(),
        })
    }

    /// The compiled, validated pack.
    pub(crate) fn compile(&self) -> miette::Result<crate::policy::CompiledPack> {
        Ok(self.pack()?.compile()?)
    }
}

fn parse_as_of(s: &str) -> Result<crate::time::Timestamp, String> {
    crate::time::parse_timestamp(s)
}

/// Everything `check` and `attest` compute before they render.
pub(crate) struct Assessed {
    pub(crate) reconciled: crate::reconcile::Reconciled,
    pub(crate) eval: crate::policy::Evaluation,
    pub(crate) applied: AppliedExceptions,
}

/// Reconciles the collection, evaluates the pack over it and applies the
/// exceptions, reporting each phase to `progress`.
pub(crate) fn assess(
    root: &std::path::Path,
    common: &CollectionArgs,
    pack: &crate::policy::CompiledPack,
    exceptions: &ExceptionArgs,
    keep_subjects: bool,
    progress: &mut progress::Progress,
) -> miette::Result<Assessed> {
    progress.phase("reading desired state and sync logs");
    let prepared = prepare(root, common)?;
    // Each application is reconciled and evaluated in one go, and only its
    // findings, counts and drift are kept (memory follows the largest
    // application, not the collection).
    let bar = progress.counted_phase("reconciling and evaluating applications");
    let (reconciled, mut eval) = crate::policy::reconcile_and_evaluate(
        prepared,
        pack,
        crate::policy::EvaluateOptions {
            keep_subjects,
            progress: bar.as_ref(),
        },
    )?;
    progress.phase("applying exceptions");
    let applied = exceptions.apply(root, &reconciled, pack, &mut eval)?;
    Ok(Assessed {
        reconciled,
        eval,
        applied,
    })
}

/// Loads a collection and folds its sync logs, ready for its applications
/// to be reconciled.
pub(crate) fn prepare(
    root: &std::path::Path,
    common: &CollectionArgs,
) -> miette::Result<crate::reconcile::Prepared> {
    check_collection(root)?;
    let prepared = crate::reconcile::prepare(root, &reconcile_options(common))?;
    warn_quarantined(prepared.facts());
    Ok(prepared)
}

/// Refuses a directory that is not a collection, before reading anything.
fn check_collection(root: &std::path::Path) -> miette::Result<()> {
    if !root.join(crate::ingest::collection::MANIFEST).is_file() {
        return Err(miette::miette!(
            help = "a collection is a directory with `collection.yaml` at its root; see docs/formats.md",
            "`{}` is not a collection: no `collection.yaml` in it",
            root.display()
        ));
    }
    Ok(())
}

fn reconcile_options(common: &CollectionArgs) -> crate::reconcile::Options {
    crate::reconcile::Options {
        as_of: common.as_of,
        quarantine: common.quarantine,
    }
}

fn warn_quarantined(r: &crate::reconcile::Reconciled) {
    if !r.rejected.is_empty() {
        note(&format!(
            "warning: {} sync-log line(s) were quarantined and left out; they are listed in the output",
            r.rejected.len()
        ));
    }
}

/// syncproof: policy-checked, signed audit evidence from identity-connector
/// sync logs and application snapshots.
#[derive(Debug, Parser)]
#[command(name = "syncproof", version, about, long_about = None)]
pub struct Cli {
    /// How errors are rendered on stderr.
    #[arg(long, value_enum, global = true, default_value_t = ErrorFormat::Human)]
    pub error_format: ErrorFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the reconciled state of a collection: change lifecycles, drift,
    /// connector health, snapshot ages.
    Reconcile(reconcile::ReconcileArgs),
    /// Write a signed evidence pack: reports, findings, the applied policies,
    /// a manifest of every input and output, Ed25519 signatures.
    Attest(attest::AttestArgs),
    /// Evaluate the policies over a collection; exit 1 when a finding is at
    /// or above `--fail-on` (the CI gate).
    Check(check::CheckArgs),
    /// Inspect the policy pack: `list` or `validate`.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Write a new Ed25519 signing key pair.
    Keygen(keygen::KeygenArgs),
    /// Verify a signed evidence pack against a pinned public key.
    Verify(verify::VerifyArgs),
    /// Write a synthetic collection of a given size, with planted violations
    /// and their ground truth.
    Generate(generate::GenerateArgs),
}

/// Parses the command line, runs it and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap renders help/version itself; those are not errors.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Trouble
            } else {
                ExitCode::Clean
            };
        }
    };
    install_error_hook(cli.error_format);
    let result = match cli.command {
        Command::Reconcile(args) => reconcile::run(&args),
        Command::Attest(args) => attest::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Policy(cmd) => policy::run(&cmd),
        Command::Keygen(args) => keygen::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Generate(args) => generate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            report_error(cli.error_format, &report);
            ExitCode::Trouble
        }
    }
}

/// Sets up miette's renderer for the chosen error format.
fn install_error_hook(format: ErrorFormat) {
    let plain = matches!(format, ErrorFormat::Plain);
    let _ = miette::set_hook(Box::new(move |_| {
        let mut opts = miette::MietteHandlerOpts::new().terminal_links(false);
        if plain {
            opts = opts
                .color(false)
                .unicode(false)
                .graphical_theme(miette::GraphicalTheme::unicode_nocolor());
        }
        Box::new(opts.build())
    }));
}

/// Writes one error report to stderr in the chosen format.
pub(crate) fn report_error(format: ErrorFormat, report: &miette::Report) {
    let mut stderr = std::io::stderr().lock();
    let _ = match format {
        ErrorFormat::Json => {
            let mut out = String::new();
            let _ = miette::JSONReportHandler::new().render_report(&mut out, report.as_ref());
            writeln!(stderr, "{out}")
        }
        ErrorFormat::Plain => {
            let mut out = String::new();
            let _ = miette::NarratableReportHandler::new().render_report(&mut out, report.as_ref());
            write!(stderr, "{out}")
        }
        ErrorFormat::Human => writeln!(stderr, "{report:?}"),
    };
}

/// Writes `text` to stdout, treating a closed pipe as success (like ripgrep).
pub(crate) fn write_stdout(bytes: &[u8]) -> miette::Result<()> {
    let mut out = stdout();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| miette::miette!("cannot write to stdout: {e}"))
}

/// Buffered stdout on which a closed pipe (`| head`) is not an error of ours:
/// once the reader has gone, the rest of the output is discarded.
pub(crate) fn stdout() -> std::io::BufWriter<ClosedPipeOk<std::io::StdoutLock<'static>>> {
    std::io::BufWriter::with_capacity(
        1 << 20,
        ClosedPipeOk {
            inner: std::io::stdout().lock(),
            closed: false,
        },
    )
}

/// A writer that turns `BrokenPipe` into success and drops later writes.
pub(crate) struct ClosedPipeOk<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> Write for ClosedPipeOk<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// Writes one line to stderr (warnings and progress notes).
pub(crate) fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails every call with `kind`.
    struct Failing {
        room: usize,
        kind: std::io::ErrorKind,
        got: Vec<u8>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn closed_pipe_ok(room: usize, kind: std::io::ErrorKind) -> ClosedPipeOk<Failing> {
        ClosedPipeOk {
            inner: Failing {
                room,
                kind,
                got: Vec::new(),
            },
            closed: false,
        }
    }

    #[test]
    fn a_closed_pipe_is_success_and_the_rest_is_dropped() {
        let mut w = closed_pipe_ok(3, std::io::ErrorKind::BrokenPipe);
        w.write_all(b"abcdef").unwrap();
        w.write_all(b"more").unwrap();
        w.flush().unwrap();
        assert!(w.closed);
        assert_eq!(w.inner.got, b"abc");
    }

    #[test]
    fn other_write_errors_are_errors() {
        let mut w = closed_pipe_ok(3, std::io::ErrorKind::StorageFull);
        let e = w.write_all(b"abcdef").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        assert!(!w.closed);
    }
}
