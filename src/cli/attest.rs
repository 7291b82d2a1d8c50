//! `syncproof attest`: the main job. Reconciles a collection, evaluates the
//! policies, renders the reports and writes a signed evidence pack.
//!
//! The pack is written to a temporary directory beside `--out` and renamed
//! into place only when complete (see `evidence::pack`), so a failed run
//! never leaves something at `--out` that could pass for a pack.

use std::path::{Path, PathBuf};

use super::{note, write_stdout, ExitCode};
use crate::evidence::assessment::{Assessment, Verdict};
use crate::evidence::keys::PrivateKey;
use crate::evidence::pack::{PackBuilder, PackOptions, ProduceError};
use crate::evidence::render::{ReportContext, Templates, HTML_TEMPLATE, MD_TEMPLATE};
use crate::evidence::report::Report;
use crate::policy::Severity;

/// Arguments of `syncproof attest`.
#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// The collection directory (holding `collection.yaml`).
    pub collection: PathBuf,
    /// Where to write the pack (a directory that must not exist yet, unless
    /// `--force`).
    #[arg(long, value_name = "PACK")]
    pub out: PathBuf,
    /// The signing key (PKCS#8 PEM, mode 0600). Without it, a throwaway key
    /// is generated and its public half written beside the pack as
    /// `PACK.pub.pem`: such a pack proves integrity, not origin.
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub common: super::CollectionArgs,
    #[command(flatten)]
    pub policy: super::PolicyArgs,
    #[command(flatten)]
    pub exceptions: super::ExceptionArgs,
    /// Report templates overlaid on the built-in ones (`report.html.j2`,
    /// `report.md.j2`).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// The severity the verdict is judged at. When given, `attest` also exits
    /// 1 if the verdict is FAIL (after writing the pack); without it, a
    /// written pack exits 0 whatever it found.
    #[arg(long, value_enum)]
    pub fail_on: Option<Severity>,
    /// Replace an existing pack at `--out`.
    #[arg(long)]
    pub force: bool,
}

/// Runs `syncproof attest`.
pub(crate) fn run(args: &AttestArgs) -> miette::Result<ExitCode> {
    let mut progress = super::progress::Progress::new(args.common.timings);
    progress.phase("compiling policies");
    let pack = args.policy.compile()?;
    let templates = match &args.templates {
        Some(dir) => Templates::with_overlay(dir)?,
        None => Templates::builtin(),
    };
    let (key, throwaway) = match &args.key {
        Some(path) => (PrivateKey::from_pem_file(path)?, false),
        None => (PrivateKey::generate()?, true),
    };
    let pub_path = throwaway_pub_path(&args.out);
    if throwaway && pub_path.exists() && !args.force {
        return Err(miette::miette!(
            help = "pass `--force` to replace it, or sign with `--key`",
            "`{}` already exists",
            pub_path.display()
        ));
    }
    let super::Assessed {
        reconciled,
        eval,
        applied,
    } = super::assess(
        &args.collection,
        &args.common,
        &pack,
        &args.exceptions,
        true,
        &mut progress,
    )?;
    progress.phase("building the report model");
    let fail_on = args.fail_on.unwrap_or(Severity::Low);
    let assessment = Assessment::new(&reconciled, &pack, &eval, applied.reports, fail_on);
    let report = Report::new(
        &reconciled,
        &pack,
        &assessment,
        key.key_id().as_str(),
        throwaway,
    );
    let predicate = serde_json::json!({
        "collection": assessment.collection,
        "as_of": assessment.as_of,
        "tool": assessment.tool,
        "policy_set_sha256": assessment.policy_set_sha256,
        "fail_on": assessment.fail_on,
        "verdict": assessment.verdict,
        "inputs": reconciled.inputs.iter().map(|i| serde_json::json!({
            "path": i.path, "sha256": i.sha256, "kind": i.kind,
        })).collect::<Vec<_>>(),
        "counts": {
            "total": assessment.counts.total,
            "failing": assessment.counts.failing,
            "excepted": assessment.counts.excepted,
            "by_severity": assessment.counts.by_severity,
            "by_control": assessment.counts.by_control,
        },
        "subjects": assessment.subjects,
    });

    // The reports and machine formats are rendered when the pack is written,
    // each straight into its file and concurrently (see `evidence::pack`).
    progress.phase("rendering, hashing, signing, writing");
    // Both reports are rendered from one conversion of the model, made by
    // whichever starts first (the other waits for it).
    let context = std::sync::OnceLock::new();
    let mut builder = PackBuilder::new();
    // The machine formats first: they hold the JUnit file, the largest,
    // which the pack starts first (see `PackBuilder::add_streamed`).
    crate::evidence::formats::add_machine_files(
        &mut builder,
        &assessment,
        &eval,
        &reconciled,
        &pack.catalog,
        Some(&pack.tiers),
    )?;
    for (name, template) in [("report.html", HTML_TEMPLATE), ("report.md", MD_TEMPLATE)] {
        let (templates, report, context) = (&templates, &report, &context);
        builder.add_streamed(name, move |out| -> Result<(), ProduceError> {
            let context = context.get_or_init(|| ReportContext::new(report));
            templates.render_to(template, context, out)?;
            Ok(())
        })?;
    }
    builder.add_streamed("findings.json", |out| -> Result<(), ProduceError> {
        assessment.write_json(out)?;
        Ok(())
    })?;
    for (name, text) in &pack.files {
        builder.add(format!("policies/{name}"), text.clone())?;
    }
    if let Some((name, text)) = &applied.file {
        // The exceptions applied, as read: listed in the manifest, so signed.
        let base = name.rsplit('/').next().unwrap_or(name);
        builder.add(format!("exceptions/{base}"), text.clone())?;
    }
    let summary = builder.write(
        &args.out,
        PackOptions {
            overwrite: args.force,
            as_of: assessment.as_of.clone(),
            tool_version: assessment.tool.version.clone(),
            inputs: reconciled.inputs.clone(),
            predicate,
        },
        &key,
    )?;
    progress.finish(Some((eval.eval_time, eval.cedar_time)));
    if throwaway {
        let pem = key.public_key().to_pem()?;
        write_public_key(&pub_path, &pem)?;
        note(&format!(
            "warning: signed with a throwaway key; its public half is `{}`. Such a pack proves integrity, not origin: sign with `--key` (see `syncproof keygen`) for evidence of who produced it",
            pub_path.display()
        ));
    }
    write_stdout(
        format!(
            "{}\nwrote {} ({} files), signed by key {}\n",
            crate::evidence::text::verdict_line(&assessment),
            summary.path.display(),
            summary.file_count,
            summary.key_id
        )
        .as_bytes(),
    )?;
    let code = match (args.fail_on, assessment.verdict) {
        (Some(_), Verdict::Fail) => ExitCode::Failed,
        _ => ExitCode::Clean,
    };
    // The reconciled collection, the evaluation, the report model and its
    // conversion for the templates are millions of small allocations
    // (freeing them took about 0.5 s on W1); the process ends right after
    // the command, which returns the memory at once.
    std::mem::forget((report, context));
    std::mem::forget((reconciled, eval, assessment));
    Ok(code)
}

/// `PACK.pub.pem`, beside the pack (never inside it).
fn throwaway_pub_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "pack".into());
    name.push(".pub.pem");
    out.with_file_name(name)
}

/// Writes the public key atomically (temporary file, then rename).
fn write_public_key(path: &Path, pem: &str) -> miette::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    std::io::Write::write_all(&mut tmp, pem.as_bytes())
        .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    // A public key is public: readable by everyone (temporary files are 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    }
    tmp.persist(path)
        .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    Ok(())
}
