//! The command line: clap types, one file per subcommand, and the exit code.
//!
//! Only this module prints. Stages return data; each subcommand wires the
//! stages together and writes what they return to stdout (reports) or stderr
//! (diagnostics).

use std::io::Write;
use std::process::Termination;

use clap::{Parser, Subcommand, ValueEnum};

mod generate;
mod keygen;
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
}

fn parse_as_of(s: &str) -> Result<crate::time::Timestamp, String> {
    crate::time::parse_timestamp(s)
}

/// Loads a collection and reconciles it.
pub(crate) fn load_and_reconcile(
    root: &std::path::Path,
    common: &CollectionArgs,
) -> miette::Result<crate::reconcile::Reconciled> {
    if !root.join(crate::ingest::collection::MANIFEST).is_file() {
        return Err(miette::miette!(
            help = "a collection is a directory with `collection.yaml` at its root; see docs/formats.md",
            "`{}` is not a collection: no `collection.yaml` in it",
            root.display()
        ));
    }
    let collection = crate::ingest::load(root)?;
    let reconciled = crate::reconcile::run(
        &collection,
        &crate::reconcile::Options {
            as_of: common.as_of,
            quarantine: common.quarantine,
        },
    )?;
    if !reconciled.rejected.is_empty() {
        note(&format!(
            "warning: {} sync-log line(s) were quarantined and left out; they are listed in the output",
            reconciled.rejected.len()
        ));
    }
    Ok(reconciled)
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
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(miette::miette!("cannot write to stdout: {e}")),
    }
}

/// Writes one line to stderr (warnings and progress notes).
pub(crate) fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
