//! The policy pack: Cedar schema, policies, tier targets and control catalog.
//!
//! The shipped pack is built into the binary, so an installed `syncproof`
//! works from any directory. `--policies DIR` is overlaid on it: every
//! `*.cedar` file in DIR is added (one with a shipped file's name replaces
//! it), and `schema.cedarschema`, `tiers.yaml` or `controls.yaml` in DIR
//! replace the shipped ones.
//!
//! [`PolicyPack::compile`] parses every file, validates the policies strictly
//! against the schema, and checks every policy's annotations; every problem is
//! reported with its file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Effect, EntityUid, Policy, PolicyId, PolicySet, Schema, ValidationMode,
    Validator,
};
use miette::{Diagnostic, NamedSource};
use serde::Deserialize;
use thiserror::Error;

use super::controls::Catalog;
use super::findings::{Severity, SubjectKind};
use super::slice::{entity_attr_reads, leading_guards, reads_context, store_reads, Guard, Slices};
use crate::ingest::model::TierTargets;

/// The Cedar schema's file name.
pub const SCHEMA_FILE: &str = "schema.cedarschema";
/// The tier targets' file name.
pub const TIERS_FILE: &str = "tiers.yaml";
/// The control catalog's file name.
pub const CONTROLS_FILE: &str = "controls.yaml";
/// The Cedar namespace of the schema.
pub const NAMESPACE: &str = "SyncProof";

/// The shipped pack, built in.
const BUILTIN: &[(&str, &str)] = &[
    (
        SCHEMA_FILE,
        include_str!("../../policies/schema.cedarschema"),
    ),
    (TIERS_FILE, include_str!("../../policies/tiers.yaml")),
    (CONTROLS_FILE, include_str!("../../policies/controls.yaml")),
    (
        "baseline.cedar",
        include_str!("../../policies/baseline.cedar"),
    ),
    (
        "change-failed.cedar",
        include_str!("../../policies/change-failed.cedar"),
    ),
    (
        "connector-failing.cedar",
        include_str!("../../policies/connector-failing.cedar"),
    ),
    (
        "connector-silent.cedar",
        include_str!("../../policies/connector-silent.cedar"),
    ),
    (
        "expired-grant.cedar",
        include_str!("../../policies/expired-grant.cedar"),
    ),
    (
        "grant-age.cedar",
        include_str!("../../policies/grant-age.cedar"),
    ),
    (
        "missed-event.cedar",
        include_str!("../../policies/missed-event.cedar"),
    ),
    (
        "not-revoked.cedar",
        include_str!("../../policies/not-revoked.cedar"),
    ),
    (
        "orphan-account.cedar",
        include_str!("../../policies/orphan-account.cedar"),
    ),
    (
        "revocation-unconfirmed.cedar",
        include_str!("../../policies/revocation-unconfirmed.cedar"),
    ),
    (
        "snapshot-stale.cedar",
        include_str!("../../policies/snapshot-stale.cedar"),
    ),
    (
        "sync-latency.cedar",
        include_str!("../../policies/sync-latency.cedar"),
    ),
    (
        "sync-overdue.cedar",
        include_str!("../../policies/sync-overdue.cedar"),
    ),
    (
        "unauthorized-access.cedar",
        include_str!("../../policies/unauthorized-access.cedar"),
    ),
];

/// A problem with the policy pack.
#[derive(Debug, Error, Diagnostic)]
pub enum PolicyError {
    /// A file of DIR could not be read.
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(syncproof::policy::io))]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A Cedar file does not parse.
    #[error("`{file}` is not valid Cedar")]
    #[diagnostic(code(syncproof::policy::parse))]
    Parse {
        /// The file.
        file: String,
        /// Its text, for the snippet.
        #[source_code]
        src: NamedSource<String>,
        /// Cedar's errors.
        #[related]
        errors: Vec<Problem>,
    },
    /// The schema does not parse.
    #[error("`{file}` is not a valid Cedar schema")]
    #[diagnostic(code(syncproof::policy::schema))]
    Schema {
        /// The file.
        file: String,
        /// Its text.
        #[source_code]
        src: NamedSource<String>,
        /// Cedar's error.
        #[related]
        errors: Vec<Problem>,
    },
    /// Policies fail strict validation or annotation checks.
    #[error("{count} problem{} in the policies", if *.count == 1 { "" } else { "s" })]
    #[diagnostic(
        code(syncproof::policy::invalid),
        help(
            "see docs/policies.md for the schema, the required annotations and the control catalog"
        )
    )]
    Invalid {
        /// How many.
        count: usize,
        /// Each problem, with its file and line.
        #[related]
        problems: Vec<Problem>,
    },
    /// `tiers.yaml` or `controls.yaml` is invalid.
    #[error("`{file}` is invalid: {message}")]
    #[diagnostic(code(syncproof::policy::config))]
    Config {
        /// The file.
        file: String,
        /// What is wrong (with line or path).
        message: String,
    },
}

/// One annotated problem at a policy's file and line.
#[derive(Debug, Error, Diagnostic)]
#[error("{file}:{line}: {message}")]
struct AnnotationProblem {
    file: String,
    line: usize,
    message: String,
}

/// One problem in the pack, shown against the policy file it refers to when
/// that is known.
#[derive(Debug, Error)]
#[error("{}{inner}", src.as_ref().map(|s| format!("{}: ", s.name())).unwrap_or_default())]
pub struct Problem {
    inner: Box<dyn Diagnostic + Send + Sync>,
    src: Option<NamedSource<String>>,
}

impl Problem {
    fn new(
        inner: impl Diagnostic + Send + Sync + 'static,
        src: Option<NamedSource<String>>,
    ) -> Self {
        Problem {
            inner: Box::new(inner),
            src,
        }
    }
}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.inner.code()
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.inner.help()
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match &self.src {
            Some(s) => Some(s as &dyn miette::SourceCode),
            None => self.inner.source_code(),
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.inner.related()
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.inner.labels()
    }
}

/// The pack's files before compilation: name → text.
#[derive(Clone, Debug)]
pub struct PolicyPack {
    files: BTreeMap<String, String>,
    /// Where the overlay came from, if any.
    pub overlay: Option<String>,
}

/// A policy's metadata, from its annotations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PolicyMeta {
    /// `@id`.
    pub id: String,
    /// `@title`.
    pub title: String,
    /// `@severity` (absent on permits).
    pub severity: Option<Severity>,
    /// `@controls`, in order.
    pub controls: Vec<String>,
    /// `@remediation`.
    pub remediation: String,
    /// `forbid` or `permit`.
    pub effect: String,
    /// Which subject kinds its action scope covers.
    pub actions: Vec<SubjectKind>,
    /// The file it is in.
    pub file: String,
    /// The line it starts on.
    pub line: usize,
}

/// A compiled, validated pack.
pub struct CompiledPack {
    /// All policies, keyed by `@id`.
    pub policies: PolicySet,
    /// For each subject kind, only the policies whose scope can apply to it:
    /// Cedar walks every policy of a set on every request, so this keeps each
    /// request to the policies that matter without changing any decision.
    pub by_action: BTreeMap<SubjectKind, PolicySet>,
    /// The schema.
    pub schema: Schema,
    /// Tier targets by tier name.
    pub tiers: BTreeMap<String, TierTargets>,
    /// The control catalog.
    pub catalog: Catalog,
    /// Policy metadata by `@id`.
    pub meta: BTreeMap<String, PolicyMeta>,
    /// The files that make up the pack (name → text), as applied.
    pub files: BTreeMap<String, String>,
    /// For each subject kind, the context fields its policies read (`None`:
    /// a policy uses `context` as a whole, so every field is passed).
    /// Building a Cedar context costs per field, so unread fields are left
    /// out of the request; decisions cannot change, since no policy reads
    /// them.
    pub context_fields: BTreeMap<SubjectKind, Option<BTreeSet<String>>>,
    /// Each policy's leading guards, by `@id` (see [`super::slice`]).
    pub guards: BTreeMap<String, Vec<Guard>>,
    /// For each subject kind, its per-action policy set sliced by the
    /// policies' leading guards: each request is decided against only the
    /// policies its context values do not provably rule out.
    pub slices: BTreeMap<SubjectKind, Slices>,
    /// The attribute names any policy reads on an entity (`e.attr`,
    /// `e has attr`), or `None` when some policy cannot be analysed (then
    /// every attribute is kept). Entities are built without the other
    /// attributes: Cedar cannot observe an attribute no policy names.
    pub entity_attrs: Option<BTreeSet<String>>,
    /// The subject kinds some of whose policies may read the entity store
    /// (see [`super::slice::StoreReads`]), or `None` when that cannot be
    /// told (a policy could not be analysed, or names an entity literal).
    /// A request of any other kind is decided the same whatever the store
    /// holds, so the entities only such requests name are not built.
    pub store_kinds: Option<BTreeSet<SubjectKind>>,
}

/// Collects the `context.x` / `context has x` attributes an EST (Cedar's JSON
/// policy form) reads; sets `whole` when `context` is used any other way.
fn context_reads(v: &serde_json::Value, fields: &mut BTreeSet<String>, whole: &mut bool) {
    match v {
        serde_json::Value::Object(map) => {
            for op in [".", "has"] {
                if let Some(inner) = map.get(op) {
                    if reads_context(inner) {
                        match inner.get("attr").and_then(|a| a.as_str()) {
                            Some(a) => {
                                fields.insert(a.to_owned());
                            }
                            None => *whole = true,
                        }
                        return;
                    }
                }
            }
            if map.get("Var").and_then(|x| x.as_str()) == Some("context") {
                *whole = true;
                return;
            }
            for child in map.values() {
                context_reads(child, fields, whole);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                context_reads(child, fields, whole);
            }
        }
        _ => {}
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiers {
    tiers: BTreeMap<String, TierTargets>,
}

impl PolicyPack {
    /// The shipped pack.
    pub fn builtin() -> Self {
        PolicyPack {
            files: BUILTIN
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect(),
            overlay: None,
        }
    }

    /// The shipped pack with `dir` overlaid (see the module docs).
    pub fn with_overlay(dir: &Path) -> Result<Self, PolicyError> {
        let mut pack = PolicyPack::builtin();
        let io = |source: std::io::Error| PolicyError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = name.ends_with(".cedar")
                || name == SCHEMA_FILE
                || name == TIERS_FILE
                || name == CONTROLS_FILE;
            // Only regular files: a link could pull in anything.
            let ft = entry.file_type().map_err(io)?;
            if !wanted || !ft.is_file() {
                continue;
            }
            let path = entry.path();
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: path.display().to_string(),
                source,
            })?;
            pack.files.insert(name, text);
        }
        pack.overlay = Some(dir.display().to_string());
        Ok(pack)
    }

    /// The pack's files (name → text).
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Parses, validates and indexes the pack.
    pub fn compile(&self) -> Result<CompiledPack, PolicyError> {
        let text = |name: &str| self.files.get(name).cloned().unwrap_or_default();
        let schema_src = text(SCHEMA_FILE);
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&schema_src).map_err(|e| PolicyError::Schema {
                file: SCHEMA_FILE.to_owned(),
                src: NamedSource::new(SCHEMA_FILE, schema_src.clone()),
                errors: vec![Problem::new(
                    e,
                    Some(NamedSource::new(SCHEMA_FILE, schema_src.clone())),
                )],
            })?;
        let tiers = parse_tiers(&text(TIERS_FILE))?;
        let catalog = Catalog::parse(CONTROLS_FILE, &text(CONTROLS_FILE)).map_err(|message| {
            PolicyError::Config {
                file: CONTROLS_FILE.to_owned(),
                message,
            }
        })?;

        let mut problems: Vec<Problem> = Vec::new();
        let mut policies = PolicySet::new();
        let mut meta: BTreeMap<String, PolicyMeta> = BTreeMap::new();
        let mut origin: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (file, src) in self.files.iter().filter(|(n, _)| n.ends_with(".cedar")) {
            let set = PolicySet::from_str(src).map_err(|e| PolicyError::Parse {
                file: file.clone(),
                src: NamedSource::new(file.clone(), src.clone()),
                errors: vec![Problem::new(
                    e,
                    Some(NamedSource::new(file.clone(), src.clone())),
                )],
            })?;
            let starts = statement_lines(src);
            // `from_str` names policies policy0, policy1, ... in file order.
            for (n, line) in starts.iter().enumerate() {
                let Some(policy) = set.policy(&PolicyId::new(format!("policy{n}"))) else {
                    continue;
                };
                let problem = |message: String| {
                    Problem::new(
                        AnnotationProblem {
                            file: file.clone(),
                            line: *line,
                            message,
                        },
                        None,
                    )
                };
                let ann: BTreeMap<&str, &str> = policy.annotations().collect();
                let Some(id) = ann.get("id").map(|s| s.to_string()) else {
                    problems.push(problem("policy has no `@id` annotation".into()));
                    continue;
                };
                if !is_kebab(&id) {
                    problems.push(problem(format!(
                        "`@id(\"{id}\")` must be kebab-case (lowercase letters, digits, `-`)"
                    )));
                    continue;
                }
                if let Some(first) = meta.get(&id) {
                    problems.push(problem(format!(
                        "`@id(\"{id}\")` is used twice (first at {}:{})",
                        first.file, first.line
                    )));
                    continue;
                }
                let effect = match policy.effect() {
                    Effect::Forbid => "forbid",
                    Effect::Permit => "permit",
                };
                let title = ann.get("title").map(|s| s.to_string()).unwrap_or_default();
                if title.is_empty() {
                    problems.push(problem(format!("policy `{id}` has no `@title`")));
                }
                let mut severity = None;
                let mut controls = Vec::new();
                let remediation = ann
                    .get("remediation")
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                if effect == "forbid" {
                    match ann.get("severity") {
                        None => problems.push(problem(format!(
                            "policy `{id}` has no `@severity` (one of critical, high, medium, low)"
                        ))),
                        Some(s) => match Severity::parse(s) {
                            Some(s) => severity = Some(s),
                            None => problems.push(problem(format!(
                                "policy `{id}` has unknown severity `{s}` (expected critical, high, medium or low)"
                            ))),
                        },
                    }
                    match ann.get("controls") {
                        None => problems.push(problem(format!("policy `{id}` has no `@controls`"))),
                        Some(list) => {
                            for c in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                                match catalog.get(c) {
                                    None => problems.push(problem(format!(
                                        "policy `{id}` names unknown control `{c}` (not in `{CONTROLS_FILE}`)"
                                    ))),
                                    Some(ctl) if catalog.is_crosswalk_only(ctl) => {
                                        problems.push(problem(format!(
                                            "policy `{id}` claims `{c}`, a {} id kept only as a crosswalk; claim {} instead",
                                            ctl.framework,
                                            ctl.maps_to.join(", ")
                                        )))
                                    }
                                    Some(_) => controls.push(c.to_owned()),
                                }
                            }
                            if controls.is_empty() && !list.trim().is_empty() {
                                // Already reported above.
                            } else if controls.is_empty() {
                                problems.push(problem(format!(
                                    "policy `{id}` has an empty `@controls`"
                                )));
                            }
                        }
                    }
                    if remediation.is_empty() {
                        problems.push(problem(format!("policy `{id}` has no `@remediation`")));
                    }
                }
                let actions = match policy.action_constraint() {
                    ActionConstraint::Any => SubjectKind::ALL.to_vec(),
                    ActionConstraint::Eq(uid) => kinds_of(std::slice::from_ref(&uid)),
                    ActionConstraint::In(uids) => kinds_of(&uids),
                };
                meta.insert(
                    id.clone(),
                    PolicyMeta {
                        id: id.clone(),
                        title,
                        severity,
                        controls,
                        remediation,
                        effect: effect.to_owned(),
                        actions,
                        file: file.clone(),
                        line: *line,
                    },
                );
                origin.insert(id.clone(), (file.clone(), src.clone()));
                if let Err(e) = policies.add(policy.new_id(PolicyId::new(&id))) {
                    problems.push(problem(format!("cannot add policy `{id}`: {e}")));
                }
            }
        }
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for e in validation.validation_errors() {
            let id = e.policy_id().to_string();
            let src = origin
                .get(&id)
                .map(|(file, src)| NamedSource::new(file.clone(), src.clone()));
            problems.push(Problem::new(e.clone(), src));
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid {
                count: problems.len(),
                problems,
            });
        }
        let mut by_action = BTreeMap::new();
        let mut context_fields = BTreeMap::new();
        let mut guards: BTreeMap<String, Vec<Guard>> = BTreeMap::new();
        let mut reads: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut slices = BTreeMap::new();
        let mut attr_names = BTreeSet::new();
        let mut attrs_unknown = false;
        let mut store_unknown = false;
        let mut reading_store: BTreeSet<&str> = BTreeSet::new();
        // The copies requests are decided against, by `@id`.
        let mut copies: BTreeMap<&str, Policy> = BTreeMap::new();
        for m in meta.values() {
            let policy = policies.policy(&PolicyId::new(&m.id));
            match policy.and_then(|p| p.to_json().ok()) {
                Some(est) => {
                    guards.insert(m.id.clone(), leading_guards(&est));
                    entity_attr_reads(&est, &mut attr_names, &mut attrs_unknown);
                    let store = store_reads(&est);
                    store_unknown |= store.literal;
                    if store.reads {
                        reading_store.insert(&m.id);
                    }
                    let mut fields = BTreeSet::new();
                    let mut whole = false;
                    context_reads(&est, &mut fields, &mut whole);
                    reads.insert(m.id.clone(), (!whole).then_some(fields));
                    if let Some(p) = policy {
                        copies.insert(&m.id, for_evaluation(p, est));
                    }
                }
                // Cannot tell what it reads: no guards, keep every attribute
                // and context field.
                None => {
                    guards.insert(m.id.clone(), Vec::new());
                    reads.insert(m.id.clone(), None);
                    attrs_unknown = true;
                    store_unknown = true;
                    if let Some(p) = policy {
                        copies.insert(&m.id, p.clone());
                    }
                }
            }
        }
        for kind in SubjectKind::ALL {
            let mut set = PolicySet::new();
            for m in meta.values().filter(|m| m.actions.contains(&kind)) {
                if let Some(p) = copies.get(m.id.as_str()) {
                    // Ids are unique in `policies`, so they are here too.
                    let _ = set.add(p.clone());
                }
            }
            by_action.insert(kind, set);
            let members = meta
                .values()
                .filter(|m| m.actions.contains(&kind))
                .filter_map(|m| {
                    Some((
                        copies.get(m.id.as_str())?.clone(),
                        guards.get(&m.id).cloned().unwrap_or_default(),
                        reads.get(&m.id).cloned().flatten(),
                    ))
                })
                .collect();
            let sliced = Slices::new(members);
            // What the action's policies read, together: its full set's
            // fields (`None` if any of them uses `context` whole or cannot
            // be analysed).
            context_fields.insert(kind, sliced.full().context_fields.clone());
            slices.insert(kind, sliced);
        }
        let store_kinds = (!store_unknown).then(|| {
            SubjectKind::ALL
                .into_iter()
                .filter(|k| {
                    meta.values()
                        .any(|m| m.actions.contains(k) && reading_store.contains(m.id.as_str()))
                })
                .collect()
        });
        Ok(CompiledPack {
            policies,
            by_action,
            schema,
            tiers,
            catalog,
            meta,
            files: self.files.clone(),
            context_fields,
            guards,
            slices,
            entity_attrs: (!attrs_unknown).then_some(attr_names),
            store_kinds,
        })
    }
}

/// The copy of `policy` that requests are decided against: the same policy,
/// rebuilt from its JSON form (Cedar's own lossless representation of a
/// policy, [`Policy::to_json`]), which carries no source locations. Cedar
/// copies a policy's source location into the expressions and values it
/// builds while evaluating the policy, so a copy without one is cheaper to
/// evaluate (about a tenth of the time inside `is_authorized` on the
/// benchmark workloads) and decides every request the same: same effect,
/// scope, conditions, id and annotations. If the policy cannot make the
/// round trip, it is used as it is. `est` is its JSON form.
fn for_evaluation(policy: &Policy, est: serde_json::Value) -> Policy {
    Policy::from_json(Some(policy.id().clone()), est).unwrap_or_else(|_| policy.clone())
}

/// The subject kinds named by action uids of our namespace.
fn kinds_of(uids: &[EntityUid]) -> Vec<SubjectKind> {
    let mut kinds: BTreeSet<SubjectKind> = BTreeSet::new();
    for uid in uids {
        let id: &str = uid.id().as_ref();
        if let Some(k) = SubjectKind::ALL.iter().find(|k| k.as_str() == id) {
            kinds.insert(*k);
        }
    }
    kinds.into_iter().collect()
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses `tiers.yaml`.
fn parse_tiers(text: &str) -> Result<BTreeMap<String, TierTargets>, PolicyError> {
    let raw: RawTiers =
        crate::ingest::parse_yaml_document(TIERS_FILE, text).map_err(|e| PolicyError::Config {
            file: TIERS_FILE.to_owned(),
            message: e.to_string(),
        })?;
    if raw.tiers.is_empty() {
        return Err(PolicyError::Config {
            file: TIERS_FILE.to_owned(),
            message: "no tiers are defined".into(),
        });
    }
    Ok(raw.tiers)
}

/// The 1-based line on which each top-level Cedar statement starts (its first
/// annotation or its `permit`/`forbid`), skipping comments and strings.
fn statement_lines(src: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut line = 1usize;
    let mut at_start = true;
    let mut chars = src.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' if chars.next() == Some('\n') => line += 1,
                '"' => in_string = false,
                '\n' => line += 1,
                _ => {}
            }
            continue;
        }
        match c {
            '\n' => line += 1,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            ';' => at_start = true,
            '"' => {
                in_string = true;
                if at_start {
                    lines.push(line);
                    at_start = false;
                }
            }
            _ => {
                if at_start {
                    lines.push(line);
                    at_start = false;
                }
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pack_compiles_and_every_policy_is_annotated() {
        let pack = PolicyPack::builtin().compile().unwrap();
        assert!(pack.meta.len() >= 14);
        for m in pack.meta.values().filter(|m| m.effect == "forbid") {
            assert!(m.severity.is_some(), "{}", m.id);
            assert!(!m.controls.is_empty(), "{}", m.id);
            assert_eq!(m.actions.len(), 1, "{} should target one action", m.id);
            assert_eq!(format!("{}.cedar", m.id), m.file);
        }
        assert_eq!(pack.meta["baseline"].actions.len(), 6);
        assert_eq!(pack.tiers.len(), 4);
    }

    #[test]
    fn evaluation_copies_are_the_same_policies_without_source() {
        let pack = PolicyPack::builtin().compile().unwrap();
        let mut seen = 0;
        for set in pack.by_action.values() {
            for copy in set.policies() {
                let original = pack.policies.policy(copy.id()).unwrap();
                assert_eq!(copy.to_json().unwrap(), original.to_json().unwrap());
                assert_eq!(
                    copy.annotations().collect::<Vec<_>>(),
                    original.annotations().collect::<Vec<_>>()
                );
                assert_eq!(copy.effect(), original.effect());
                seen += 1;
            }
        }
        assert!(seen >= pack.meta.len());
    }

    #[test]
    fn context_fields_are_what_the_policies_read() {
        let pack = PolicyPack::builtin().compile().unwrap();
        let change = pack.context_fields[&SubjectKind::Change].clone().unwrap();
        for f in ["confirmed", "removal", "latency_ms", "pending_ms", "status"] {
            assert!(change.contains(f), "{f}");
        }
        assert!(!change.contains("key") && !change.contains("attempts"));
        let snapshot = pack.context_fields[&SubjectKind::Snapshot].clone().unwrap();
        assert_eq!(snapshot.into_iter().collect::<Vec<_>>(), vec!["age_ms"]);
        // A policy that uses the whole context gets every field.
        let src = "@id(\"whole\")\n@title(\"t\")\n@severity(\"low\")\n@controls(\"PR.AA-05\")\n@remediation(\"r\")\nforbid (principal, action == SyncProof::Action::\"snapshot\", resource) when { context == {\"age_ms\": 1} };\n";
        let pack = overlay(&[("whole.cedar", src)]).unwrap();
        assert_eq!(pack.context_fields[&SubjectKind::Snapshot], None);
    }

    #[test]
    fn statement_lines_skip_comments_and_strings() {
        let src = "// a;\n@id(\"x;y\")\npermit (principal, action, resource);\n\n// b\nforbid (principal, action, resource)\nwhen { \"a;\" == \"b\" };\n";
        assert_eq!(statement_lines(src), vec![2, 6]);
    }

    fn overlay(files: &[(&str, &str)]) -> Result<CompiledPack, PolicyError> {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        PolicyPack::with_overlay(dir.path())?.compile()
    }

    fn rendered(e: PolicyError) -> String {
        let handler = miette::NarratableReportHandler::new();
        let mut out = String::new();
        handler.render_report(&mut out, &e).unwrap();
        out
    }

    #[test]
    fn annotation_problems_name_file_and_line() {
        let src = "\n\n@id(\"bad-sev\")\n@title(\"t\")\n@severity(\"urgent\")\n@controls(\"PR.AA-05\")\n@remediation(\"r\")\nforbid (principal, action == SyncProof::Action::\"change\", resource);\n\n@id(\"bad-control\")\n@title(\"t\")\n@severity(\"low\")\n@controls(\"NHI-03\")\n@remediation(\"r\")\nforbid (principal, action == SyncProof::Action::\"change\", resource);\n\n@title(\"no id\")\nforbid (principal, action, resource);\n";
        let e = overlay(&[("custom.cedar", src)]).err().unwrap();
        let shown = rendered(e);
        assert!(
            shown.contains("custom.cedar:3: policy `bad-sev` has unknown severity `urgent`"),
            "{shown}"
        );
        assert!(
            shown.contains("custom.cedar:10: policy `bad-control` names unknown control `NHI-03`"),
            "{shown}"
        );
        assert!(
            shown.contains("custom.cedar:17: policy has no `@id`"),
            "{shown}"
        );
    }

    #[test]
    fn crosswalk_only_ids_cannot_be_claimed() {
        let src = "@id(\"old-id\")\n@title(\"t\")\n@severity(\"low\")\n@controls(\"PR.AC-4\")\n@remediation(\"r\")\nforbid (principal, action == SyncProof::Action::\"change\", resource);\n";
        let shown = rendered(overlay(&[("x.cedar", src)]).err().unwrap());
        assert!(shown.contains("PR.AA-05"), "{shown}");
    }

    #[test]
    fn schema_violations_are_reported_with_the_file() {
        let src = "@id(\"typo\")\n@title(\"t\")\n@severity(\"low\")\n@controls(\"PR.AA-05\")\n@remediation(\"r\")\nforbid (principal, action == SyncProof::Action::\"change\", resource)\nwhen { context.latency > 5 };\n";
        let shown = rendered(overlay(&[("typo.cedar", src)]).err().unwrap());
        assert!(shown.contains("typo.cedar"), "{shown}");
        assert!(shown.contains("latency"), "{shown}");
    }

    #[test]
    fn parse_errors_name_the_file() {
        let shown = rendered(
            overlay(&[("broken.cedar", "forbid (principal, action resource);")])
                .err()
                .unwrap(),
        );
        assert!(shown.contains("broken.cedar"), "{shown}");
    }

    #[test]
    fn overlay_replaces_a_shipped_file_by_name() {
        let src = "@id(\"sync-latency\")\n@title(\"stricter\")\n@severity(\"critical\")\n@controls(\"PR.AA-05\")\n@remediation(\"r\")\nforbid (principal, action == SyncProof::Action::\"change\", resource) when { context.confirmed && context.latency_ms > 0 };\n";
        let pack = overlay(&[("sync-latency.cedar", src)]).unwrap();
        assert_eq!(pack.meta["sync-latency"].severity, Some(Severity::Critical));
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let src = "@id(\"not-revoked\")\n@title(\"dup\")\n@severity(\"low\")\n@controls(\"PR.AA-05\")\n@remediation(\"r\")\nforbid (principal, action, resource);\n";
        let shown = rendered(overlay(&[("dup.cedar", src)]).err().unwrap());
        assert!(shown.contains("used twice"), "{shown}");
    }
}
