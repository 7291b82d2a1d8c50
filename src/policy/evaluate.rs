//! Reconciled facts → Cedar entities and requests → decisions → findings.
//!
//! Every subject (change, grant, assignment, account, connector, snapshot) is
//! one Cedar request, decided by Cedar's authorizer (called directly:
//! [`super::authorize`]) against every policy whose action scope can apply
//! to it, less those a false leading context guard rules out
//! ([`super::slice`]: that changes no decision, determining policy or
//! error). On `Deny`, each determining forbid policy becomes a finding.
//! Entity stores are built per partition — one per application, plus one for
//! the connectors — and dropped after use, so memory follows the largest
//! application rather than the whole collection. Partitions are evaluated in
//! parallel; findings are sorted afterwards, so the output does not depend on
//! thread scheduling.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use rayon::prelude::*;

use super::authorize::{Decider, Literal, Query, Uid};
use super::findings::{Evaluation, Finding, PolicyTally, Subject, SubjectKind};
use super::pack::{CompiledPack, NAMESPACE};
use super::slice::{GuardValue, Slice};
use super::subjects::{EvaluatedSubjects, Run, SubjectLists};
use crate::ingest::model::{Identity, SourceRef, TierTargets};
use crate::reconcile::model::{
    AccountState, AssignmentState, Change, ChangeStatus, ConnectorHealth, Grant, SnapshotFreshness,
};
use crate::reconcile::Reconciled;
use crate::spool::Spool;
use crate::time::{format_timestamp, Span};
use crate::{FastMap, FastSet};

/// Why evaluation could not complete.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EvaluateError {
    /// An application names a tier that `tiers.yaml` does not define.
    #[error("application `{application}` has tier `{tier}`, which `tiers.yaml` does not define")]
    #[diagnostic(
        code(syncproof::policy::unknown_tier),
        help("define the tier in `tiers.yaml`, or use one of: {known}")
    )]
    UnknownTier {
        /// The application.
        application: String,
        /// Its tier.
        tier: String,
        /// The tiers defined.
        known: String,
    },
    /// Cedar could not build an entity or request (a schema mismatch).
    #[error("cannot build the Cedar {what}: {message}")]
    #[diagnostic(code(syncproof::policy::cedar))]
    Cedar {
        /// What was being built.
        what: String,
        /// Cedar's message.
        message: String,
    },
    /// An input could not be read while its application was reconciled
    /// (see [`reconcile_and_evaluate`]).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// The temporary file that holds the evaluated subjects (for JUnit)
    /// could not be written or read.
    #[error("cannot use the temporary file of the evaluated subjects: {0}")]
    #[diagnostic(
        code(syncproof::policy::temporary_file),
        help("point TMPDIR at a writable directory with room for about 50 bytes per subject")
    )]
    TempFile(#[source] std::io::Error),
    /// A policy raised an error for a subject; fail closed rather than treat
    /// the subject as compliant.
    #[error(
        "{count} policy evaluation error(s); first: policy `{policy}` on `{subject}`: {message}"
    )]
    #[diagnostic(
        code(syncproof::policy::evaluation),
        help("a rule that cannot be evaluated proves nothing; fix the policy (e.g. guard optional attributes with `has`)")
    )]
    Evaluation {
        /// How many errors.
        count: usize,
        /// The first failing policy.
        policy: String,
        /// Its subject.
        subject: String,
        /// Cedar's message.
        message: String,
    },
}

/// A context value: turned into a Cedar value for every request, and into
/// JSON only for findings. Strings borrow from the reconciled record (or are
/// constants), so building a request copies none.
#[derive(Clone, Debug)]
pub(super) enum Val<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A long.
    Long(i64),
    /// A boolean.
    Bool(bool),
}

impl Val<'_> {
    fn literal(&self) -> Literal<'_> {
        match self {
            Val::Str(s) => Literal::Str(s),
            Val::Long(n) => Literal::Long(*n),
            Val::Bool(b) => Literal::Bool(*b),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Val::Str(s) => serde_json::Value::String(s.to_string()),
            Val::Long(n) => serde_json::Value::from(*n),
            Val::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

/// Entity type names of the schema, parsed once.
struct Types {
    tier: EntityTypeName,
    connector: EntityTypeName,
    application: EntityTypeName,
    identity: EntityTypeName,
    entitlement: EntityTypeName,
    account: EntityTypeName,
    snapshot: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, EvaluateError> {
        let t = |n: &str| {
            EntityTypeName::from_str(&format!("{NAMESPACE}::{n}")).map_err(|e| {
                EvaluateError::Cedar {
                    what: "entity type".into(),
                    message: e.to_string(),
                }
            })
        };
        Ok(Types {
            tier: t("Tier")?,
            connector: t("Connector")?,
            application: t("Application")?,
            identity: t("Identity")?,
            entitlement: t("Entitlement")?,
            account: t("Account")?,
            snapshot: t("Snapshot")?,
            action: t("Action")?,
        })
    }

    fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

fn cedar_err(what: &str, e: impl std::fmt::Display) -> EvaluateError {
    EvaluateError::Cedar {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// The reconciled record a request is about. Subject, facts and evidence are
/// built from it only when a policy forbids (or, for the subject id, when
/// every subject must be listed), so passing subjects cost no formatting.
enum Src<'a> {
    Change(&'a Change),
    Grant(&'a Grant, &'a str),
    Assignment(&'a AssignmentState),
    Account(&'a AccountState),
    Connector(&'a ConnectorHealth),
    Snapshot(&'a SnapshotFreshness, Vec<SourceRef>),
}

/// One request to make.
struct Req<'a> {
    kind: SubjectKind,
    principal: Uid,
    resource: Uid,
    context: Vec<(&'static str, Val<'a>)>,
    src: Src<'a>,
    tier: &'a str,
}

/// Options for [`evaluate`].
#[derive(Clone, Copy, Debug, Default)]
pub struct EvaluateOptions<'a> {
    /// Keep the list of every subject evaluated (for JUnit).
    pub keep_subjects: bool,
    /// A progress bar to advance by one per partition evaluated (its length
    /// is set to the number of partitions). Display only: never read back.
    pub progress: Option<&'a indicatif::ProgressBar>,
}

/// Evaluates every subject of `r` against the pack.
pub fn evaluate(
    r: &Reconciled,
    pack: &CompiledPack,
    options: EvaluateOptions<'_>,
) -> Result<Evaluation, EvaluateError> {
    check_tiers(r, pack)?;
    let mut env = Env::new(r, pack, options.keep_subjects)?;
    let parts: Vec<(&str, Partition<'_>)> = partitions(r).into_iter().collect();
    let tick = progress(options, parts.len());
    let mut results: Vec<Result<PartResult, EvaluateError>> = parts
        .par_iter()
        // One application per task (see `Prepared::reconcile_apps`).
        .with_max_len(1)
        .map(|(app, part)| {
            let res = env.evaluate_application(app, part);
            tick();
            res
        })
        .collect();
    results.push(env.evaluate_connectors());
    tick();
    merge(results, pack, env.subjects.take())
}

/// Reconciles the applications of `prepared` one at a time and evaluates
/// each as soon as it is reconciled, keeping only its findings, counts, drift
/// and snapshot figures: its grants, assignment states and accounts are
/// dropped once decided, so they never accumulate. Gives the same evaluation
/// as [`evaluate`] on the fully reconciled collection; the reconciled
/// collection returned has empty `grants`, `assignments` and `accounts`
/// (their counts are in `snapshots`).
pub fn reconcile_and_evaluate(
    prepared: crate::reconcile::Prepared,
    pack: &CompiledPack,
    options: EvaluateOptions<'_>,
) -> Result<(Reconciled, Evaluation), EvaluateError> {
    let (eval, digests, apps) = {
        let r = prepared.facts();
        check_tiers(r, pack)?;
        let mut env = Env::new(r, pack, options.keep_subjects)?;
        let tick = progress(options, r.applications.len());
        // The connectors are decided beside the applications (they need
        // only the collection's facts), so neither core waits for them at
        // the end.
        let (apps_outcome, connectors) = rayon::join(
            || {
                prepared.reconcile_apps(|mut access, changes| {
                    let evidence = std::mem::take(&mut access.evidence);
                    let app = access.snapshot.application.as_str();
                    let part = Partition {
                        changes: changes.to_vec(),
                        grants: access
                            .grants
                            .iter()
                            .filter(|g| g.identity.is_some())
                            .collect(),
                        assignments: access.assignments.iter().collect(),
                        accounts: access.accounts.iter().collect(),
                        snapshot: Some((&access.snapshot, evidence)),
                    };
                    let res = env.evaluate_application(app, &part);
                    drop(part);
                    tick();
                    // Decided: only the drift and the snapshot's figures are kept.
                    access.grants = Vec::new();
                    access.assignments = Vec::new();
                    access.accounts = Vec::new();
                    (res, access)
                })
            },
            || {
                let res = env.evaluate_connectors();
                tick();
                res
            },
        );
        let (outcomes, digests) = apps_outcome?;
        let mut results = Vec::with_capacity(outcomes.len() + 1);
        let mut apps = Vec::with_capacity(outcomes.len());
        for (res, access) in outcomes {
            results.push(res);
            apps.push(access);
        }
        results.push(connectors);
        (merge(results, pack, env.subjects.take())?, digests, apps)
    };
    let reconciled = prepared.finish(digests, apps)?;
    Ok((reconciled, eval))
}

/// Every application's tier must be defined.
fn check_tiers(r: &Reconciled, pack: &CompiledPack) -> Result<(), EvaluateError> {
    for a in &r.applications {
        if !pack.tiers.contains_key(&a.tier) {
            return Err(EvaluateError::UnknownTier {
                application: a.id.clone(),
                tier: a.tier.clone(),
                known: pack.tiers.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(())
}

/// Sets the bar's length to the partitions (and the connectors), and
/// returns what advances it by one.
fn progress(options: EvaluateOptions<'_>, partitions: usize) -> impl Fn() + Sync + '_ {
    if let Some(bar) = options.progress {
        bar.set_length(partitions as u64 + 1);
    }
    move || {
        if let Some(bar) = options.progress {
            bar.inc(1);
        }
    }
}

/// Merges the partitions' results into the evaluation: counts summed,
/// findings and subjects sorted by total orders (so the result does not
/// depend on which thread decided what), and the first evaluation error (in
/// a total order) reported if there was any. `subjects` is the spool the
/// partitions wrote their subjects to, if they were kept.
fn merge(
    results: Vec<Result<PartResult, EvaluateError>>,
    pack: &CompiledPack,
    subjects: Option<std::sync::Mutex<Spool>>,
) -> Result<Evaluation, EvaluateError> {
    let mut out = Evaluation::default();
    let mut errors: Vec<(String, String, String)> = Vec::new();
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut evaluated = Vec::with_capacity(results.len());
    for res in results {
        let part = res?;
        for (k, n) in part.subjects {
            *out.subjects.entry(k).or_default() += n;
        }
        for (id, n) in part.failed {
            *failed.entry(id).or_default() += n;
        }
        out.findings.extend(part.findings);
        evaluated.push(part.runs);
        out.cedar_time += part.cedar_time;
        out.eval_time += part.eval_time;
        errors.extend(part.errors);
    }
    if !errors.is_empty() {
        errors.sort();
        let count = errors.len();
        let (policy, subject, message) = errors.swap_remove(0);
        return Err(EvaluateError::Evaluation {
            count,
            policy,
            subject,
            message,
        });
    }
    // Every policy evaluates every subject of the kinds its scope covers,
    // including the requests whose sliced set left it out: a false leading
    // guard decided it (not satisfied) without Cedar walking it.
    for m in pack.meta.values() {
        let evaluated = m
            .actions
            .iter()
            .map(|k| out.subjects.get(k).copied().unwrap_or(0))
            .sum();
        out.policies.insert(
            m.id.clone(),
            PolicyTally {
                evaluated,
                failed: failed.get(&m.id).copied().unwrap_or(0),
            },
        );
    }
    out.findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    // Millions of ids under `attest`: each partition's lists were sorted
    // and written out; they are joined here.
    if let Some(spool) = subjects {
        let spool = spool
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.evaluated = SubjectLists::merge(spool, evaluated).map_err(EvaluateError::TempFile)?;
    }
    Ok(out)
}

/// For each connector: the strictest tier (shortest heartbeat window) among
/// its applications, and the applications it serves.
fn connector_info<'a>(
    r: &'a Reconciled,
    pack: &CompiledPack,
) -> HashMap<&'a str, (&'a str, Vec<&'a str>)> {
    let mut out: HashMap<&str, (&str, Vec<&str>)> = HashMap::new();
    for a in &r.applications {
        let window = |t: &str| pack.tiers.get(t).map(|t| t.heartbeat_window);
        let e = out
            .entry(a.connector.as_str())
            .or_insert((a.tier.as_str(), Vec::new()));
        if (window(&a.tier), a.tier.as_str()) < (window(e.0), e.0) {
            e.0 = a.tier.as_str();
        }
        e.1.push(a.id.as_str());
    }
    out
}

/// The subjects of each application, in application order.
fn partitions(r: &Reconciled) -> BTreeMap<&str, Partition<'_>> {
    let mut parts: BTreeMap<&str, Partition<'_>> = BTreeMap::new();
    for a in &r.applications {
        parts.insert(a.id.as_str(), Partition::default());
    }
    for (app, changes) in crate::reconcile::changes_by_app(&r.changes) {
        if let Some(p) = parts.get_mut(app) {
            p.changes = changes;
        }
    }
    for g in r.grants.iter().filter(|g| g.identity.is_some()) {
        if let Some(p) = parts.get_mut(g.application.as_str()) {
            p.grants.push(g);
        }
    }
    for a in &r.assignments {
        if let Some(p) = parts.get_mut(a.application.as_str()) {
            p.assignments.push(a);
        }
    }
    for a in &r.accounts {
        if let Some(p) = parts.get_mut(a.application.as_str()) {
            p.accounts.push(a);
        }
    }
    for s in &r.snapshots {
        if let Some(p) = parts.get_mut(s.application.as_str()) {
            // The snapshot's files, as whole-file evidence.
            let evidence = crate::reconcile::snapshot_evidence(&s.files, |file| {
                r.inputs
                    .iter()
                    .find(|i| i.path == file)
                    .map(|i| i.sha256.as_str())
            });
            p.snapshot = Some((s, evidence));
        }
    }
    parts
}

#[derive(Default)]
struct Partition<'a> {
    changes: Vec<&'a Change>,
    grants: Vec<&'a Grant>,
    assignments: Vec<&'a AssignmentState>,
    accounts: Vec<&'a AccountState>,
    /// The snapshot, and its files as evidence.
    snapshot: Option<(&'a SnapshotFreshness, Vec<SourceRef>)>,
}

#[derive(Default)]
struct PartResult {
    subjects: BTreeMap<SubjectKind, u64>,
    failed: BTreeMap<String, u64>,
    findings: Vec<Finding>,
    /// The subjects decided (when they are kept), until they are spilled.
    evaluated: EvaluatedSubjects,
    /// Where they were spilled.
    runs: Vec<(SubjectKind, Run)>,
    errors: Vec<(String, String, String)>,
    cedar_time: std::time::Duration,
    /// Time spent building the partition's entities and requests and
    /// deciding them (Cedar included).
    eval_time: std::time::Duration,
}

struct Env<'a> {
    r: &'a Reconciled,
    pack: &'a CompiledPack,
    types: Types,
    /// Application id → (tier, connector).
    apps: FastMap<&'a str, (&'a str, &'a str)>,
    /// Connector id → (strictest tier, applications).
    connectors: HashMap<&'a str, (&'a str, Vec<&'a str>)>,
    identities: FastMap<&'a str, &'a Identity>,
    /// Where partitions write the subjects they decided, when they are kept
    /// (for JUnit).
    subjects: Option<std::sync::Mutex<Spool>>,
    /// The entity attributes the application partitions build.
    keep: Keep<'a>,
    /// The tier entities with those attributes, built once.
    tiers: Vec<Entity>,
    /// Whether identity entities are built at all. With none of their
    /// attributes kept they would have no attributes and no parents, and
    /// for strictly validated policies (every pack is) such an entity cannot
    /// be told from an absent one: attribute access and `has` name only
    /// schema attributes (all pruned), `in` sees no ancestors either way, and
    /// `==` and `is` use the uid. So they are left out of the stores.
    identity_entities: bool,
    /// The subject kinds whose requests may read the store
    /// ([`CompiledPack::store_kinds`]; every kind when that is unknown). An
    /// entity that only requests of other kinds name is not built: no
    /// policy that can apply to them observes it.
    store_kinds: BTreeSet<SubjectKind>,
}

/// Which entity attributes to build. Cedar observes an entity's attributes
/// only through `e.attr` and `e has attr` (equality and `in` use the uid and
/// the parents), so leaving out every attribute whose name no policy uses
/// that way cannot change a decision ([`CompiledPack::entity_attrs`]).
#[derive(Clone, Copy)]
enum Keep<'a> {
    /// Every attribute of the schema (the pack could not be analysed, or
    /// the store is validated against the schema).
    All,
    /// Only these.
    Only(&'a BTreeSet<String>),
}

impl Keep<'_> {
    fn has(self, name: &str) -> bool {
        match self {
            Keep::All => true,
            Keep::Only(names) => names.contains(name),
        }
    }
}

/// An entity's attributes: each value is built only if `keep` has its name.
type Lazy<'f> = &'f dyn Fn() -> RestrictedExpression;

fn attrs<const N: usize>(
    keep: Keep<'_>,
    pairs: [(&str, Lazy<'_>); N],
) -> HashMap<String, RestrictedExpression> {
    pairs
        .into_iter()
        .filter(|(k, _)| keep.has(k))
        .map(|(k, v)| (k.to_owned(), v()))
        .collect()
}

impl<'a> Env<'a> {
    /// The lookups every partition shares, built once.
    fn new(
        r: &'a Reconciled,
        pack: &'a CompiledPack,
        keep_subjects: bool,
    ) -> Result<Self, EvaluateError> {
        let keep = pack.entity_attrs.as_ref().map_or(Keep::All, Keep::Only);
        let mut env = Env {
            r,
            pack,
            types: Types::new()?,
            apps: r
                .applications
                .iter()
                .map(|a| (a.id.as_str(), (a.tier.as_str(), a.connector.as_str())))
                .collect(),
            connectors: connector_info(r, pack),
            identities: r.identities.iter().map(|i| (i.id.as_str(), i)).collect(),
            subjects: keep_subjects.then(|| std::sync::Mutex::new(Spool::new())),
            keep,
            tiers: Vec::new(),
            identity_entities: ["kind", "human", "status", "owner"]
                .iter()
                .any(|a| keep.has(a)),
            store_kinds: pack
                .store_kinds
                .clone()
                .unwrap_or_else(|| SubjectKind::ALL.into_iter().collect()),
        };
        env.tiers = env.tier_entities(keep)?;
        Ok(env)
    }
}

impl Env<'_> {
    fn tier_uid(&self, tier: &str) -> RestrictedExpression {
        RestrictedExpression::new_entity_uid(self.types.uid(&self.types.tier, tier))
    }

    fn tier_entities(&self, keep: Keep<'_>) -> Result<Vec<Entity>, EvaluateError> {
        let mut out = Vec::new();
        for (name, t) in &self.pack.tiers {
            let d = |s: Span| RestrictedExpression::new_duration(s.to_string());
            let a = attrs(
                keep,
                [
                    ("name", &|| RestrictedExpression::new_string(name.clone())),
                    ("max_sync_latency", &|| d(t.max_sync_latency)),
                    ("revocation_window", &|| d(t.revocation_window)),
                    ("max_grant_age", &|| d(t.max_grant_age)),
                    ("heartbeat_window", &|| d(t.heartbeat_window)),
                    ("max_snapshot_age", &|| d(t.max_snapshot_age)),
                ],
            );
            out.push(
                Entity::new(self.types.uid(&self.types.tier, name), a, HashSet::new())
                    .map_err(|e| cedar_err("tier entity", e))?,
            );
        }
        Ok(out)
    }

    fn connector_entity(&self, id: &str, keep: Keep<'_>) -> Result<Entity, EvaluateError> {
        let (tier, apps) = self
            .connectors
            .get(id)
            .map(|(t, a)| (*t, a.as_slice()))
            .unwrap_or(("", &[]));
        Entity::new(
            self.types.uid(&self.types.connector, id),
            attrs(
                keep,
                [
                    ("tier", &|| self.tier_uid(tier)),
                    ("applications", &|| {
                        RestrictedExpression::new_set(
                            apps.iter()
                                .map(|a| RestrictedExpression::new_string((*a).to_owned())),
                        )
                    }),
                ],
            ),
            HashSet::new(),
        )
        .map_err(|e| cedar_err("connector entity", e))
    }

    fn identity_entity(&self, id: &str) -> Result<Entity, EvaluateError> {
        let (kind, human, status, owner) = match self.identities.get(id) {
            Some(i) => (
                i.kind.as_str(),
                i.kind.is_human(),
                i.status.as_str(),
                i.owner.as_deref(),
            ),
            // A change for an identity the desired state does not know.
            None => ("unknown", false, "unknown", None),
        };
        let mut a = attrs(
            self.keep,
            [
                ("kind", &|| {
                    RestrictedExpression::new_string(kind.to_owned())
                }),
                ("human", &|| RestrictedExpression::new_bool(human)),
                ("status", &|| {
                    RestrictedExpression::new_string(status.to_owned())
                }),
            ],
        );
        if let Some(o) = owner.filter(|_| self.keep.has("owner")) {
            a.insert(
                "owner".to_owned(),
                RestrictedExpression::new_string(o.to_owned()),
            );
        }
        Entity::new(self.types.uid(&self.types.identity, id), a, HashSet::new())
            .map_err(|e| cedar_err("identity entity", e))
    }

    fn member_entity(
        &self,
        ty: &EntityTypeName,
        app: &str,
        name: &str,
        tier: &str,
    ) -> Result<Entity, EvaluateError> {
        let app_uid = self.types.uid(&self.types.application, app);
        Entity::new(
            self.types.uid(ty, &format!("{app}/{name}")),
            attrs(
                self.keep,
                [
                    ("name", &|| {
                        RestrictedExpression::new_string(name.to_owned())
                    }),
                    ("application", &|| {
                        RestrictedExpression::new_entity_uid(app_uid.clone())
                    }),
                    ("tier", &|| self.tier_uid(tier)),
                ],
            ),
            HashSet::from([app_uid]),
        )
        .map_err(|e| cedar_err("entity", e))
    }

    fn evaluate_application<'a>(
        &'a self,
        app: &'a str,
        part: &Partition<'a>,
    ) -> Result<PartResult, EvaluateError> {
        let started = std::time::Instant::now();
        let (store, reqs) = self.build_application(app, part)?;
        let mut out = self.decide(reqs, &store)?;
        drop(store);
        out.eval_time = started.elapsed();
        Ok(out)
    }

    /// One application's entity store and requests.
    fn build_application<'a>(
        &'a self,
        app: &'a str,
        part: &Partition<'a>,
    ) -> Result<(Entities, Vec<Req<'a>>), EvaluateError> {
        let t = &self.types;
        let (tier, connector) = self.apps.get(app).copied().unwrap_or(("", ""));
        let app_uid = t.uid(&t.application, app);
        let mut entities = self.tiers.clone();
        entities.push(self.connector_entity(connector, self.keep)?);
        entities.push(
            Entity::new(
                app_uid.clone(),
                attrs(
                    self.keep,
                    [
                        ("tier", &|| self.tier_uid(tier)),
                        ("connector", &|| {
                            RestrictedExpression::new_entity_uid(t.uid(&t.connector, connector))
                        }),
                    ],
                ),
                HashSet::new(),
            )
            .map_err(|e| cedar_err("application entity", e))?,
        );
        let mut seen_identities: FastSet<&str> = FastSet::default();
        let mut seen_entitlements: FastSet<&str> = FastSet::default();
        let mut reqs: Vec<Req<'a>> = Vec::with_capacity(
            part.changes.len()
                + part.grants.len()
                + part.assignments.len()
                + part.accounts.len()
                + 1,
        );
        // Each entitlement's uid, built once: grants and assignments of a
        // partition name a few entitlements many times.
        let mut entitlement_uids: FastMap<&str, Uid> = FastMap::default();
        let mut entitlement_uid = |name: &'a str| {
            entitlement_uids
                .entry(name)
                .or_insert_with(|| t.uid(&t.entitlement, &format!("{app}/{name}")).into())
                .clone()
        };
        // The application's uid as requests name it (shared, not copied).
        let app_req_uid = Uid::from(app_uid.clone());

        let reads = |kind| self.store_kinds.contains(&kind);
        let (changes, grants, assignments, accounts, snapshot) = (
            reads(SubjectKind::Change),
            reads(SubjectKind::Grant),
            reads(SubjectKind::Assignment),
            reads(SubjectKind::Account),
            reads(SubjectKind::Snapshot),
        );
        for c in &part.changes {
            if changes && self.identity_entities && seen_identities.insert(&c.identity) {
                entities.push(self.identity_entity(&c.identity)?);
            }
            reqs.push(change_req(t, c, &app_req_uid, tier));
        }
        for g in &part.grants {
            let Some(identity) = g.identity.as_deref() else {
                continue;
            };
            if grants && self.identity_entities && seen_identities.insert(identity) {
                entities.push(self.identity_entity(identity)?);
            }
            if grants && seen_entitlements.insert(g.entitlement.as_str()) {
                entities.push(self.member_entity(&t.entitlement, app, &g.entitlement, tier)?);
            }
            reqs.push(grant_req(
                t,
                g,
                identity,
                entitlement_uid(&g.entitlement),
                tier,
            ));
        }
        for a in &part.assignments {
            if assignments && self.identity_entities && seen_identities.insert(a.identity.as_str())
            {
                entities.push(self.identity_entity(&a.identity)?);
            }
            if assignments && seen_entitlements.insert(a.entitlement.as_str()) {
                entities.push(self.member_entity(&t.entitlement, app, &a.entitlement, tier)?);
            }
            reqs.push(assignment_req(t, a, entitlement_uid(&a.entitlement), tier));
        }
        for a in &part.accounts {
            if accounts {
                entities.push(self.member_entity(&t.account, app, &a.account, tier)?);
            }
            reqs.push(account_req(t, a, &app_req_uid, tier));
        }
        if let Some((s, evidence)) = &part.snapshot {
            let snap_uid = t.uid(&t.snapshot, app);
            if snapshot {
                entities.push(
                    Entity::new(
                        snap_uid.clone(),
                        attrs(
                            self.keep,
                            [
                                ("application", &|| {
                                    RestrictedExpression::new_entity_uid(app_uid.clone())
                                }),
                                ("tier", &|| self.tier_uid(tier)),
                                ("format", &|| {
                                    RestrictedExpression::new_string(s.format.clone())
                                }),
                            ],
                        ),
                        HashSet::from([app_uid.clone()]),
                    )
                    .map_err(|e| cedar_err("snapshot entity", e))?,
                );
            }
            reqs.push(Req {
                kind: SubjectKind::Snapshot,
                principal: app_req_uid.clone(),
                resource: snap_uid.into(),
                context: vec![("age_ms", Val::Long(s.age.as_millis()))],
                src: Src::Snapshot(s, evidence.clone()),
                tier,
            });
        }
        // The entities are built here from the schema's own shapes, so the
        // store is not validated against the schema again (that costs more
        // than building it); policies were validated strictly at load.
        let store =
            Entities::from_entities(entities, None).map_err(|e| cedar_err("entity store", e))?;
        Ok((store, reqs))
    }

    fn evaluate_connectors(&self) -> Result<PartResult, EvaluateError> {
        let started = std::time::Instant::now();
        let (store, reqs) = self.build_connectors()?;
        let mut out = self.decide(reqs, &store)?;
        drop(store);
        out.eval_time = started.elapsed();
        Ok(out)
    }

    /// The connectors' entity store and requests.
    fn build_connectors(&self) -> Result<(Entities, Vec<Req<'_>>), EvaluateError> {
        // This store is validated against the schema, so its entities carry
        // every attribute.
        let mut entities = self.tier_entities(Keep::All)?;
        let mut reqs = Vec::new();
        for c in &self.r.connectors {
            entities.push(self.connector_entity(&c.id, Keep::All)?);
            let tier = self
                .connectors
                .get(c.id.as_str())
                .map(|(t, _)| *t)
                .unwrap_or_default();
            let uid = self.types.uid(&self.types.connector, &c.id);
            let since_error = c.last_error_at.map(|e| Span::between(&e, &self.r.as_of));
            reqs.push(Req {
                kind: SubjectKind::Connector,
                principal: uid.clone().into(),
                resource: uid.into(),
                context: vec![
                    ("seen", Val::Bool(c.last_seen.is_some())),
                    ("silence_ms", Val::Long(ms(c.silence))),
                    ("errors", Val::Long(c.errors as i64)),
                    ("has_error", Val::Bool(c.last_error_at.is_some())),
                    ("since_last_error_ms", Val::Long(ms(since_error))),
                    ("failed_attempts", Val::Long(c.failed_attempts as i64)),
                    ("pending_changes", Val::Long(c.pending_changes as i64)),
                    ("failed_changes", Val::Long(c.failed_changes as i64)),
                ],
                src: Src::Connector(c),
                tier,
            });
        }
        let store = Entities::from_entities(entities, Some(&self.pack.schema))
            .map_err(|e| cedar_err("entity store", e))?;
        Ok((store, reqs))
    }

    fn decide(&self, reqs: Vec<Req<'_>>, store: &Entities) -> Result<PartResult, EvaluateError> {
        let decider = Decider::default();
        let mut out = PartResult::default();
        let empty = PolicySet::new();
        let actions: BTreeMap<SubjectKind, Uid> = SubjectKind::ALL
            .iter()
            .map(|k| (*k, self.types.uid(&self.types.action, k.as_str()).into()))
            .collect();
        for req in reqs {
            let slice = self.policies_for(&req);
            let policies = slice.map_or(&empty, |s| &s.policies);
            let action = match actions.get(&req.kind) {
                Some(a) => a.clone(),
                None => self.types.uid(&self.types.action, req.kind.as_str()).into(),
            };
            let query = Query::new(
                &req.principal,
                &action,
                &req.resource,
                self.context(&req, slice),
            )
            .map_err(|e| cedar_err("context", e))?;
            let started = std::time::Instant::now();
            let answer = decider
                .decide(query, policies, store)
                .map_err(|e| cedar_err("decision", e))?;
            out.cedar_time += started.elapsed();
            *out.subjects.entry(req.kind).or_default() += 1;
            if self.subjects.is_some() {
                out.evaluated
                    .list_mut(req.kind)
                    .push_with(|s| write_subject_id(s, &req));
            }
            for e in answer.errors() {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = &e;
                out.errors
                    .push((pe.policy_id().to_string(), subject_id(&req), e.to_string()));
            }
            if !answer.deny() {
                continue;
            }
            let reasons = answer.reasons();
            if reasons.is_empty() {
                continue;
            }
            let subject = self.subject(&req);
            let facts = self
                .pack
                .tiers
                .get(req.tier)
                .map(|t| facts(&req, t, &subject))
                .unwrap_or_default();
            let context = serde_json::Value::Object(
                req.context
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.json()))
                    .collect(),
            );
            let evidence = evidence(&req);
            for id in reasons {
                let Some(meta) = self.pack.meta.get(&id) else {
                    continue;
                };
                *out.failed.entry(id.clone()).or_default() += 1;
                let Some(severity) = meta.severity else {
                    continue;
                };
                let controls = meta
                    .controls
                    .iter()
                    .filter(|c| self.pack.catalog.applies_to(c, &subject))
                    .cloned()
                    .collect();
                out.findings.push(Finding {
                    policy_id: id.clone(),
                    severity,
                    title: meta.title.clone(),
                    controls,
                    subject: subject.clone(),
                    facts: facts.clone(),
                    context: context.clone(),
                    evidence: evidence.clone(),
                    remediation: meta.remediation.clone(),
                    exception: None,
                });
            }
        }
        // Sorted and written out here, on the thread that evaluated the
        // partition, so that joining the partitions' lists is ordering runs.
        if let Some(spool) = &self.subjects {
            out.runs = std::mem::take(&mut out.evaluated)
                .spill(spool)
                .map_err(EvaluateError::TempFile)?;
        }
        Ok(out)
    }

    /// The policies `req` is decided against: those of its action that its
    /// context values do not provably rule out (see [`super::slice`]), with
    /// the context fields they read.
    fn policies_for(&self, req: &Req<'_>) -> Option<&Slice> {
        let slices = self.pack.slices.get(&req.kind)?;
        Some(slices.select(|name| guard_value(&req.context, name)))
    }

    /// The `cedar_policy` request for `req`, with only the context fields
    /// some policy of `slice` reads (without a slice: of its action): what
    /// [`Decider::decide`] is given, in the public API's form (for the
    /// benchmark floor and the equivalence tests).
    fn api_request(
        &self,
        req: &Req<'_>,
        action: EntityUid,
        slice: Option<&Slice>,
    ) -> Result<Request, EvaluateError> {
        let context = Context::from_pairs(
            self.context(req, slice)
                .map(|(k, v)| (k.to_owned(), v.restricted())),
        )
        .map_err(|e| cedar_err("context", e))?;
        Request::new(
            req.principal.to_api(),
            action,
            req.resource.to_api(),
            context,
            None,
        )
        .map_err(|e| cedar_err("request", e))
    }

    /// The context fields of `req` that the policies of `slice` read
    /// (without a slice: its action's policies), as Cedar is given them.
    fn context<'r>(
        &'r self,
        req: &'r Req<'_>,
        slice: Option<&'r Slice>,
    ) -> impl Iterator<Item = (&'r str, Literal<'r>)> + 'r {
        self.read_fields(req, slice).map(|(k, v)| (*k, v.literal()))
    }

    /// The context fields of `req` that the policies of `slice` read
    /// (without a slice: its action's policies).
    fn read_fields<'r, 'a>(
        &'r self,
        req: &'r Req<'a>,
        slice: Option<&'r Slice>,
    ) -> impl Iterator<Item = &'r (&'static str, Val<'a>)> + 'r {
        let wanted = match slice {
            Some(s) => s.context_fields.as_ref(),
            None => self
                .pack
                .context_fields
                .get(&req.kind)
                .and_then(Option::as_ref),
        };
        req.context
            .iter()
            .filter(move |(k, _)| wanted.is_none_or(|w| w.contains(*k)))
    }

    fn identity_kind(&self, id: Option<&str>) -> Option<String> {
        id.and_then(|id| self.identities.get(id))
            .map(|i| i.kind.as_str().to_owned())
    }

    /// The subject a request is about.
    fn subject(&self, req: &Req<'_>) -> Subject {
        let base = Subject {
            kind: req.kind,
            id: subject_id(req),
            identity: None,
            identity_kind: None,
            application: None,
            entitlement: None,
            account: None,
            connector: None,
            tier: req.tier.to_owned(),
        };
        match &req.src {
            Src::Change(c) => Subject {
                identity: Some(c.identity.to_string()),
                identity_kind: self.identity_kind(Some(&c.identity)),
                application: Some(c.application.to_string()),
                entitlement: c.entitlement.as_deref().map(str::to_owned),
                ..base
            },
            Src::Grant(g, identity) => Subject {
                identity: Some((*identity).to_owned()),
                identity_kind: self.identity_kind(Some(identity)),
                application: Some(g.application.clone()),
                entitlement: Some(g.entitlement.clone()),
                account: Some(g.account.clone()),
                ..base
            },
            Src::Assignment(a) => Subject {
                identity: Some(a.identity.clone()),
                identity_kind: self.identity_kind(Some(&a.identity)),
                application: Some(a.application.clone()),
                entitlement: Some(a.entitlement.clone()),
                ..base
            },
            Src::Account(a) => Subject {
                identity: a.identity.clone(),
                identity_kind: self.identity_kind(a.identity.as_deref()),
                application: Some(a.application.clone()),
                account: Some(a.account.clone()),
                ..base
            },
            Src::Connector(c) => Subject {
                connector: Some(c.id.clone()),
                ..base
            },
            Src::Snapshot(s, _) => Subject {
                application: Some(s.application.clone()),
                ..base
            },
        }
    }
}

/// The id of the subject a request is about (`change:<key>`,
/// `grant:<app>/<account>/<entitlement>`, …): all the subject list needs.
fn subject_id(req: &Req<'_>) -> String {
    let mut s = String::new();
    write_subject_id(&mut s, req);
    s
}

/// Writes the subject id of `req` (see [`subject_id`]) into `out`.
fn write_subject_id(out: &mut String, req: &Req<'_>) {
    // Pieces pushed, not `write!`: this runs once per subject evaluated
    // (tens of millions on W10), and the formatting machinery showed up in
    // its profile.
    let (kind, parts): (&str, &[&str]) = match &req.src {
        Src::Change(c) => ("change:", &[&c.key]),
        Src::Grant(g, _) => ("grant:", &[&g.application, &g.account, &g.entitlement]),
        Src::Assignment(a) => (
            "assignment:",
            &[&a.application, &a.identity, &a.entitlement],
        ),
        Src::Account(a) => ("account:", &[&a.application, &a.account]),
        Src::Connector(c) => ("connector:", &[&c.id]),
        Src::Snapshot(s, _) => ("snapshot:", &[&s.application]),
    };
    out.push_str(kind);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(part);
    }
}

/// The value the request builder supplied for a context field, as the
/// guard key reads it.
fn guard_value<'v>(context: &'v [(&'static str, Val<'_>)], name: &str) -> Option<GuardValue<'v>> {
    context
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| match v {
            Val::Str(s) => GuardValue::Str(s),
            Val::Bool(b) => GuardValue::Bool(*b),
            Val::Long(_) => GuardValue::Other,
        })
}

fn ms(s: Option<Span>) -> i64 {
    s.map_or(0, Span::as_millis)
}

/// The input records behind a request.
fn evidence(req: &Req<'_>) -> Vec<SourceRef> {
    match &req.src {
        Src::Change(c) => c.evidence.clone(),
        Src::Grant(g, _) => g.evidence.clone(),
        Src::Assignment(a) => a.evidence.clone(),
        Src::Account(a) => a.evidence.clone(),
        Src::Connector(c) => c.evidence.clone(),
        Src::Snapshot(_, e) => e.clone(),
    }
}

/// The facts that decided a finding, for a person.
fn facts(req: &Req<'_>, targets: &TierTargets, subject: &Subject) -> String {
    let tier = req.tier;
    match &req.src {
        Src::Change(c) => {
            let what = match &c.entitlement {
                Some(e) => format!("{} of `{e}` for `{}`", c.operation.as_str(), c.identity),
                None => format!("{} for `{}`", c.operation.as_str(), c.identity),
            };
            let status = match c.status {
                ChangeStatus::Confirmed => format!(
                    "confirmed {} after {}",
                    c.confirmed_at
                        .map(|t| format_timestamp(&t))
                        .unwrap_or_default(),
                    c.latency.unwrap_or_default()
                ),
                ChangeStatus::Failed => format!(
                    "failed {}: {}; not confirmed after {}",
                    c.failed_at.map(|t| format_timestamp(&t)).unwrap_or_default(),
                    c.failure_reason.clone().unwrap_or_default(),
                    c.pending_for.unwrap_or_default()
                ),
                ChangeStatus::Pending => format!(
                    "not confirmed after {}{}",
                    c.pending_for.unwrap_or_default(),
                    if c.last_outcome == Some(crate::ingest::model::AttemptOutcome::Success) {
                        " (delivered, but a delivery is not a confirmation)"
                    } else {
                        ""
                    }
                ),
            };
            let target = if c.operation.is_removal() {
                format!("revocation window {}", targets.revocation_window)
            } else {
                format!("sync latency target {}", targets.max_sync_latency)
            };
            format!(
                "{what} in `{}` requested {}, {status}; {} attempt(s); {tier} tier {target}",
                c.application,
                format_timestamp(&c.requested_at),
                c.attempts
            )
        }
        Src::Grant(g, identity) => {
            let routes = g
                .paths
                .iter()
                .map(|p| p.describe(&g.account, &g.entitlement))
                .collect::<Vec<_>>()
                .join("; ");
            let mut s = format!(
                "`{identity}` ({}) holds `{}` in `{}` via {routes}; status {}",
                subject.identity_kind.as_deref().unwrap_or("unknown"),
                g.entitlement,
                g.application,
                g.status.as_str()
            );
            if let (Some(at), Some(age)) = (g.granted_at, g.age) {
                s.push_str(&format!(
                    "; granted {}, {age} old ({tier} tier max grant age {})",
                    format_timestamp(&at),
                    targets.max_grant_age
                ));
            }
            if let Some(e) = g.expires_at {
                s.push_str(&format!("; expires {}", format_timestamp(&e)));
            }
            if let Some(r) = &g.removal {
                s.push_str(&format!("; removal requested by change `{r}`"));
            }
            s
        }
        Src::Assignment(a) => format!(
            "`{}` approved for `{}` in `{}` at {}; in the target: {}{}",
            a.identity,
            a.entitlement,
            a.application,
            format_timestamp(&a.granted_at),
            a.status.as_str(),
            a.change
                .as_ref()
                .map(|c| format!(" (change `{c}`)"))
                .unwrap_or_else(|| " (no logged change accounts for it)".into())
        ),
        Src::Account(a) => format!(
            "account `{}` in `{}` ({}) {}; holds {} effective entitlement(s)",
            a.account,
            a.application,
            if a.active { "active" } else { "inactive" },
            match &a.identity {
                Some(i) => format!("belongs to `{i}`"),
                None => "maps to no identity".to_owned(),
            },
            a.entitlements
        ),
        Src::Connector(c) => format!(
            "connector `{}` (serves {}) last seen {}{}; {} error(s){}; {} pending, {} failed change(s); {tier} tier heartbeat window {}",
            c.id,
            c.applications.join(", "),
            c.last_seen
                .map(|t| format_timestamp(&t))
                .unwrap_or_else(|| "never".into()),
            c.silence
                .map(|s| format!(", silent for {s}"))
                .unwrap_or_default(),
            c.errors,
            match (&c.last_error_at, &c.last_error) {
                (Some(at), Some(e)) => format!(", last {}: {e}", format_timestamp(at)),
                _ => String::new(),
            },
            c.pending_changes,
            c.failed_changes,
            targets.heartbeat_window
        ),
        Src::Snapshot(s, _) => format!(
            "{} snapshot of `{}` taken {}, {} old; {tier} tier max snapshot age {}",
            s.format,
            s.application,
            format_timestamp(&s.taken_at),
            s.age,
            targets.max_snapshot_age
        ),
    }
}

fn change_req<'a>(t: &Types, c: &'a Change, app_uid: &Uid, tier: &'a str) -> Req<'a> {
    Req {
        kind: SubjectKind::Change,
        principal: t.uid(&t.identity, &c.identity).into(),
        resource: app_uid.clone(),
        context: vec![
            ("key", Val::Str(Cow::Borrowed(&c.key))),
            ("operation", Val::Str(Cow::Borrowed(c.operation.as_str()))),
            ("removal", Val::Bool(c.operation.is_removal())),
            (
                "entitlement",
                Val::Str(Cow::Borrowed(c.entitlement.as_deref().unwrap_or_default())),
            ),
            ("status", Val::Str(Cow::Borrowed(c.status.as_str()))),
            ("confirmed", Val::Bool(c.status == ChangeStatus::Confirmed)),
            ("latency_ms", Val::Long(ms(c.latency))),
            ("pending_ms", Val::Long(ms(c.pending_for))),
            ("attempts", Val::Long(i64::from(c.attempts))),
            ("redeliveries", Val::Long(i64::from(c.redeliveries))),
        ],
        src: Src::Change(c),
        tier,
    }
}

/// The request for grant `g`, whose entitlement's uid is `resource`.
fn grant_req<'a>(
    t: &Types,
    g: &'a Grant,
    identity: &'a str,
    resource: Uid,
    tier: &'a str,
) -> Req<'a> {
    Req {
        kind: SubjectKind::Grant,
        principal: t.uid(&t.identity, identity).into(),
        resource,
        context: vec![
            ("account", Val::Str(Cow::Borrowed(&g.account))),
            ("status", Val::Str(Cow::Borrowed(g.status.as_str()))),
            (
                "desired",
                Val::Bool(g.status == crate::reconcile::model::GrantStatus::Desired),
            ),
            ("via_group_only", Val::Bool(g.is_via_group_only())),
            ("paths", Val::Long(g.paths.len() as i64)),
            ("has_age", Val::Bool(g.age.is_some())),
            ("age_ms", Val::Long(ms(g.age))),
            ("removal_requested", Val::Bool(g.removal.is_some())),
        ],
        src: Src::Grant(g, identity),
        tier,
    }
}

/// The request for assignment `a`, whose entitlement's uid is `resource`.
fn assignment_req<'a>(t: &Types, a: &'a AssignmentState, resource: Uid, tier: &'a str) -> Req<'a> {
    Req {
        kind: SubjectKind::Assignment,
        principal: t.uid(&t.identity, &a.identity).into(),
        resource,
        context: vec![
            ("status", Val::Str(Cow::Borrowed(a.status.as_str()))),
            ("explained", Val::Bool(a.change.is_some())),
        ],
        src: Src::Assignment(a),
        tier,
    }
}

fn account_req<'a>(t: &Types, a: &'a AccountState, app_uid: &Uid, tier: &'a str) -> Req<'a> {
    Req {
        kind: SubjectKind::Account,
        principal: t
            .uid(&t.account, &format!("{}/{}", a.application, a.account))
            .into(),
        resource: app_uid.clone(),
        context: vec![
            ("orphan", Val::Bool(a.identity.is_none())),
            ("active", Val::Bool(a.active)),
            ("entitlements", Val::Long(a.entitlements as i64)),
        ],
        src: Src::Account(a),
        tier,
    }
}

/// Cedar's bare `is_authorized` rate on prebuilt requests, for the benchmark
/// floor (`benches/floors.rs`): the requests of the largest application's
/// partition are built once, then decided `rounds` times on one thread —
/// against the whole policy set (what a naive integration does), against the
/// per-action sets, and against the guard-sliced sets syncproof uses, the
/// three taking turns each round; and, in the same rounds, the sliced sets
/// decided as `evaluate` decides them, by [`Decider`] (which builds each
/// request's context from its literals as part of the call).
#[doc(hidden)]
pub fn cedar_floor(
    r: &Reconciled,
    pack: &CompiledPack,
    rounds: usize,
) -> Result<CedarFloor, EvaluateError> {
    let env = Env::new(r, pack, false)?;
    // The application with the most grants.
    let mut parts = partitions(r);
    let Some(app) = parts
        .iter()
        .max_by_key(|(a, p)| (p.grants.len(), std::cmp::Reverse(**a)))
        .map(|(a, _)| *a)
    else {
        return Ok(CedarFloor::default());
    };
    let Some(part) = parts.remove(app) else {
        return Ok(CedarFloor::default());
    };
    // Build the partition's store and requests the way `evaluate` does.
    let mut built: Vec<Built<'_>> = Vec::new();
    let store = env.prebuilt(app, &part, &mut built)?;
    let authorizer = Authorizer::new();
    let variants = [Sets::Whole, Sets::PerAction, Sets::Sliced];
    let averages = variants.map(|sets| {
        built
            .iter()
            .map(|b| sets.pick(pack, &b.kind, b.slice).policies().count())
            .sum::<usize>() as f64
            / built.len().max(1) as f64
    });
    // The variants take turns, round by round, so a noisy machine slows
    // them alike.
    let decider = Decider::default();
    let mut elapsed = [std::time::Duration::ZERO; 4];
    let mut n = 0u64;
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        for b in &built {
            let context = b.context.iter().map(|(k, v)| (*k, v.literal()));
            if let Ok(query) = Query::new(&b.principal, &b.action, &b.resource, context) {
                let _ = decider.decide(query, b.slice, &store);
            }
        }
        elapsed[3] += started.elapsed();
        for (i, sets) in variants.iter().enumerate() {
            let started = std::time::Instant::now();
            for b in &built {
                // The sliced sets get the sliced context, as in `evaluate`;
                // the others every field their action's policies read.
                let req = match sets {
                    Sets::Sliced => &b.sliced,
                    _ => &b.full,
                };
                let _ = authorizer.is_authorized(req, sets.pick(pack, &b.kind, b.slice), &store);
            }
            elapsed[i] += started.elapsed();
        }
        n += built.len() as u64;
    }
    let rate = |i: usize| n as f64 / elapsed[i].as_secs_f64().max(1e-9);
    Ok(CedarFloor {
        requests: n,
        naive_per_second: rate(0),
        per_action_per_second: rate(1),
        sliced_per_second: rate(2),
        direct_per_second: rate(3),
        policies_per_request: averages,
    })
}

/// One prebuilt request of [`cedar_floor`].
struct Built<'a> {
    kind: SubjectKind,
    /// With every context field its action's policies read.
    full: Request,
    /// With the fields its slice's policies read.
    sliced: Request,
    /// The sliced request as [`Decider`] takes it.
    principal: Uid,
    action: Uid,
    resource: Uid,
    context: Vec<(&'static str, Val<'a>)>,
    /// Its slice's policies.
    slice: &'a PolicySet,
}

/// Which policy sets [`cedar_floor`] times.
#[derive(Clone, Copy)]
enum Sets {
    Whole,
    PerAction,
    Sliced,
}

impl Sets {
    fn pick<'s>(
        self,
        pack: &'s CompiledPack,
        kind: &SubjectKind,
        sliced: &'s PolicySet,
    ) -> &'s PolicySet {
        match self {
            Sets::Whole => &pack.policies,
            Sets::PerAction => pack.by_action.get(kind).unwrap_or(&pack.policies),
            Sets::Sliced => sliced,
        }
    }
}

/// The result of [`cedar_floor`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CedarFloor {
    /// Requests decided per variant.
    pub requests: u64,
    /// Rate against the whole policy set, one thread.
    pub naive_per_second: f64,
    /// Rate against the per-action policy sets, one thread.
    pub per_action_per_second: f64,
    /// Rate against the guard-sliced policy sets (what `evaluate` uses), one
    /// thread.
    pub sliced_per_second: f64,
    /// Rate against the guard-sliced policy sets through [`Decider`] (what
    /// `evaluate` does), one thread.
    pub direct_per_second: f64,
    /// Average policies per request: whole set, per-action, sliced.
    pub policies_per_request: [f64; 3],
}

impl Env<'_> {
    /// The store and prebuilt requests of one application partition, built
    /// exactly as [`evaluate`] builds them.
    fn prebuilt<'a>(
        &'a self,
        app: &'a str,
        part: &Partition<'a>,
        out: &mut Vec<Built<'a>>,
    ) -> Result<Entities, EvaluateError> {
        let (store, reqs) = self.build_application(app, part)?;
        let empty = &self.pack.policies;
        for req in &reqs {
            let action = self.types.uid(&self.types.action, req.kind.as_str());
            let slice = self.policies_for(req);
            let sliced = self.api_request(req, action.clone(), slice)?;
            let full = self.api_request(req, action.clone(), None)?;
            out.push(Built {
                kind: req.kind,
                full,
                sliced,
                principal: req.principal.clone(),
                action: action.into(),
                resource: req.resource.clone(),
                context: self.read_fields(req, slice).cloned().collect(),
                slice: slice.map_or(empty, |s| &s.policies),
            });
        }
        Ok(store)
    }
}

/// Single requests decided against each kind of policy set, for the
/// equivalence tests (`src/policy/tests.rs`).
#[cfg(test)]
pub(super) mod probe {
    use super::*;
    use crate::policy::authorize::outcome::{of_answer, of_response, Outcome};

    /// One request decided three ways.
    pub(crate) struct Probe {
        /// The subject id.
        pub(crate) subject: String,
        /// Its kind.
        pub(crate) kind: SubjectKind,
        /// Against the sliced set, the per-action set and the whole set.
        pub(crate) outcomes: [Outcome; 3],
        /// Against the sliced set, by [`Decider`] (what `evaluate` does),
        /// read back as `Response` reads an answer.
        pub(crate) direct: Outcome,
        /// The policies in the sliced set.
        pub(crate) sliced: Vec<String>,
        /// Whether the request had a guard key (else: the full set).
        pub(crate) keyed: bool,
    }

    impl Env<'_> {
        fn probe(&self, req: &Req<'_>, store: &Entities) -> Result<Probe, EvaluateError> {
            let authorizer = Authorizer::new();
            let action = self.types.uid(&self.types.action, req.kind.as_str());
            let slice = self.policies_for(req);
            let sliced_request = self.api_request(req, action.clone(), slice)?;
            let request = self.api_request(req, action, None)?;
            let empty = PolicySet::new();
            let sliced = slice.map_or(&empty, |s| &s.policies);
            let per_action = self.pack.by_action.get(&req.kind).unwrap_or(&empty);
            let decide = |request: &Request, set: &PolicySet| {
                of_response(&authorizer.is_authorized(request, set, store))
            };
            let mut names: Vec<String> = sliced.policies().map(|p| p.id().to_string()).collect();
            names.sort();
            let query = Query::new(
                &req.principal,
                &Uid::from(self.types.uid(&self.types.action, req.kind.as_str())),
                &req.resource,
                self.context(req, slice),
            )
            .map_err(|e| cedar_err("context", e))?;
            let answer = Decider::default()
                .decide(query, sliced, store)
                .map_err(|e| cedar_err("decision", e))?;
            let direct = of_answer(&answer);
            Ok(Probe {
                subject: subject_id(req),
                kind: req.kind,
                outcomes: [
                    decide(&sliced_request, sliced),
                    decide(&request, per_action),
                    decide(&request, &self.pack.policies),
                ],
                direct,
                sliced: names,
                keyed: self
                    .pack
                    .slices
                    .get(&req.kind)
                    .and_then(|s| s.key(|name| guard_value(&req.context, name)))
                    .is_some(),
            })
        }
    }

    /// Every subject of `r`, decided three ways.
    pub(crate) fn every_subject(
        r: &Reconciled,
        pack: &CompiledPack,
    ) -> Result<Vec<Probe>, EvaluateError> {
        let env = Env::new(r, pack, false)?;
        let mut out = Vec::new();
        for (app, part) in partitions(r) {
            let (store, reqs) = env.build_application(app, &part)?;
            for req in &reqs {
                out.push(env.probe(req, &store)?);
            }
        }
        let (store, reqs) = env.build_connectors()?;
        for req in &reqs {
            out.push(env.probe(req, &store)?);
        }
        Ok(out)
    }

    /// The first subject of `kind` in `r`, with its context replaced by
    /// `context`, decided three ways (`None`: `r` has no such subject).
    pub(crate) fn with_context(
        r: &Reconciled,
        pack: &CompiledPack,
        kind: SubjectKind,
        context: Vec<(&'static str, Val<'static>)>,
    ) -> Result<Option<Probe>, EvaluateError> {
        let env = Env::new(r, pack, false)?;
        let mut found = None;
        for (app, part) in partitions(r) {
            let (store, reqs) = env.build_application(app, &part)?;
            found = reqs
                .into_iter()
                .find(|q| q.kind == kind)
                .map(|q| (store, q));
            if found.is_some() {
                break;
            }
        }
        if found.is_none() {
            let (store, reqs) = env.build_connectors()?;
            found = reqs
                .into_iter()
                .find(|q| q.kind == kind)
                .map(|q| (store, q));
        }
        let Some((store, mut req)) = found else {
            return Ok(None);
        };
        req.context = context;
        env.probe(&req, &store).map(Some)
    }
}
