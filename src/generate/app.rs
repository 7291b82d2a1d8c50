//! One application's slice of a workload: its accounts and groups (the
//! snapshot), its approved assignments, its sync-log lines, and the truth
//! its planted violations imply.
//!
//! Every slot (account, entitlement) gets one story — steady, recently
//! granted, recently revoked, or planted — and the snapshot shows exactly
//! what that story implies at the snapshot's `taken_at`: a change takes
//! effect when it is confirmed, never before. Compliant values are kept well
//! inside their targets (at most half of a latency or window, 85% of a
//! grant age), planted ones well beyond, so no boundary is ever close.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::truth::{ChangeCounts, DriftCounts, TruthFinding};
use super::world::{
    alt_account_name, display_name, identity_id, AppSpec, Plant, World, AS_OF, DAY, HOUR, LOG_SPAN,
    LOG_START, MINUTE,
};
use super::GenerateError;
use crate::ingest::model::{IdentityKind, Operation};

/// Source of every change request.
const WORKFLOWS: &str = "https://iga.example.com/workflows";
/// Number of per-day sync-log files.
pub(crate) const DAY_FILES: usize = 5;
/// Index of the `.ndjson` file that CSV applications' connectors write.
pub(crate) const LEGACY_FILE: usize = DAY_FILES;
/// Entitlement names, after the application's prefix.
const ENTITLEMENTS: [&str; 10] = [
    "read", "write", "admin", "approve", "export", "deploy", "audit", "billing", "support", "owner",
];
/// Transient delivery errors.
const RETRY_ERRORS: [&str; 4] = [
    "HTTP 429 Too Many Requests",
    "lock timeout",
    "connection reset by peer",
    "HTTP 503 Service Unavailable",
];
/// Connector-level errors.
const CONNECTOR_ERRORS: [&str; 3] = [
    "OAuth token refresh failed: invalid_grant",
    "TLS handshake to the admin API timed out",
    "rate limited by the target API",
];

/// The first day file's midnight (UTC), in epoch seconds.
fn first_day() -> i64 {
    LOG_START.div_euclid(DAY) * DAY
}

/// The day file an instant falls in.
fn day_of(t: i64) -> usize {
    ((t - first_day()).div_euclid(DAY)).clamp(0, DAY_FILES as i64 - 1) as usize
}

/// An account in the target.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    /// The identity behind it (`None`: an orphan).
    pub(crate) identity: Option<u32>,
    /// The account key (SCIM `externalId`, or `userName` for local accounts).
    pub(crate) name: String,
    /// SCIM `userName`.
    pub(crate) user_name: String,
    /// SCIM `displayName`.
    pub(crate) display: String,
    /// Whether to write `externalId`.
    pub(crate) external: bool,
    /// SCIM resource id (the name for CSV).
    pub(crate) target_id: String,
    /// Whether the account is enabled.
    pub(crate) active: bool,
    /// Whether the snapshot lists it at all.
    pub(crate) present: bool,
    /// Entitlements held directly.
    pub(crate) direct: BTreeSet<String>,
    /// Whether a leaver story (planted or logged) already uses it.
    storied: bool,
    /// Whether it was used by a planted case.
    planted: bool,
    /// Whether an `account_create` was logged for it.
    created: bool,
    /// Entitlement indices with a story.
    touched: BTreeSet<usize>,
    /// A leaver's former entitlements.
    old: Vec<usize>,
}

/// A group in the target.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// SCIM id (the name for CSV).
    pub(crate) id: String,
    /// Display name.
    pub(crate) name: String,
    /// Entitlements it confers on all transitive members.
    pub(crate) entitlements: Vec<String>,
    /// Member accounts (indices into the accounts).
    pub(crate) accounts: Vec<usize>,
    /// Member groups (indices into the groups).
    pub(crate) groups: Vec<usize>,
}

/// An approved assignment.
#[derive(Clone, Debug)]
pub(crate) struct AssignmentOut {
    /// Identity index.
    pub(crate) identity: u32,
    /// Entitlement.
    pub(crate) entitlement: String,
    /// Approved and granted at.
    pub(crate) granted_at: i64,
    /// End of time-bounded access.
    pub(crate) expires_at: Option<i64>,
    /// Approval reference.
    pub(crate) approval: String,
}

/// A sync-log line and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct LineOut {
    /// File index (day files, then the legacy file).
    pub(crate) file: usize,
    /// Sort key within the file.
    pub(crate) order: i64,
    /// Tie-breaker: creation order.
    pub(crate) seq: u64,
    /// The JSON text, without the newline.
    pub(crate) text: String,
}

/// Everything one application contributes.
#[derive(Debug, Default)]
pub(crate) struct AppOutput {
    /// Accounts (present or not).
    pub(crate) accounts: Vec<Account>,
    /// Groups.
    pub(crate) groups: Vec<Group>,
    /// Assignments for the desired state.
    pub(crate) assignments: Vec<AssignmentOut>,
    /// Sync-log lines, unsorted.
    pub(crate) lines: Vec<LineOut>,
    /// Expected findings.
    pub(crate) findings: Vec<TruthFinding>,
    /// Expected drift.
    pub(crate) drift: DriftCounts,
    /// Expected change statuses.
    pub(crate) changes: ChangeCounts,
    /// Replayed lines.
    pub(crate) replays: u64,
    /// Re-delivered requests.
    pub(crate) redeliveries: u64,
}

/// How a change ends.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Confirmed at `at` after `retries` retryable errors.
    Confirmed { at: i64, retries: u32 },
    /// Not confirmed; `retries` retryable errors, then maybe an accepted call.
    Pending { retries: u32, accepted: bool },
    /// Two retryable errors, a permanent error, then `change.failed`.
    Failed,
}

/// Where a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In the file of its own day, in time order.
    Normal,
    /// Just before the line timed `t` (a confirmation logged before its request).
    Before(i64),
    /// In the next day's file (a late-arriving request).
    NextFile,
}

/// A CloudEvents 1.0 envelope in structured mode, fields in the samples' order.
#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    time: String,
    datacontenttype: &'static str,
    data: D,
}

/// `data` of `change.requested`.
#[derive(Serialize)]
struct Requested<'a> {
    idempotency_key: &'a str,
    operation: &'static str,
    identity: &'a str,
    application: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entitlement: Option<&'a str>,
    requester: &'a str,
    approval: &'a str,
    ticket: &'a str,
}

/// `data` of `change.attempted`.
#[derive(Serialize)]
struct Attempted<'a> {
    idempotency_key: &'a str,
    attempt: u32,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `data` of `change.confirmed`.
#[derive(Serialize)]
struct Confirmed<'a> {
    idempotency_key: &'a str,
    method: &'static str,
}

/// `data` of `change.failed`.
#[derive(Serialize)]
struct Failed<'a> {
    idempotency_key: &'a str,
    reason: &'a str,
}

/// `data` of `connector.heartbeat` (no error) and `connector.error`.
#[derive(Serialize)]
struct ConnectorData<'a> {
    connector: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Formats epoch seconds the way syncproof writes timestamps.
pub(crate) fn timestamp(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| crate::time::format_timestamp(&d))
        .unwrap_or_default()
}

/// Builds one application's slice.
pub(crate) struct AppBuilder<'w> {
    world: &'w World,
    index: usize,
    app: &'w AppSpec,
    rng: ChaCha8Rng,
    entitlements: Vec<String>,
    /// Per entitlement: the groups conferring it (innermost first).
    chains: Vec<Vec<usize>>,
    /// Held, desired, unplanted (account, entitlement) slots.
    steady: Vec<(usize, usize)>,
    actives: Vec<usize>,
    leavers: Vec<usize>,
    out: AppOutput,
    source: String,
    seq: u64,
    connector_seq: u64,
    change_seq: u64,
    extra_groups: u64,
    /// Lines produced so far.
    pub(crate) lines: u64,
}

impl<'w> AppBuilder<'w> {
    /// Starts the slice of application `index`: accounts, groups and steady
    /// assignments of its members.
    pub(crate) fn new(world: &'w World, index: usize, rng: ChaCha8Rng) -> AppBuilder<'w> {
        let app = &world.apps[index];
        let mut b = AppBuilder {
            world,
            index,
            app,
            rng,
            entitlements: Vec::new(),
            chains: Vec::new(),
            steady: Vec::new(),
            actives: Vec::new(),
            leavers: Vec::new(),
            out: AppOutput::default(),
            source: format!("https://iga.example.com/connectors/{}", app.connector),
            seq: 0,
            connector_seq: 0,
            change_seq: 0,
            extra_groups: 0,
            lines: 0,
        };
        b.catalog();
        b.members();
        b
    }

    /// A random, deterministic UUID-shaped SCIM id.
    fn uuid(&mut self) -> String {
        let a: u64 = self.rng.gen();
        let b: u64 = self.rng.gen();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// The entitlement catalog and the groups that confer each entitlement:
    /// SCIM chains up to five groups deep (only the outermost holds the
    /// entitlement, so nothing leaks), some with a harmless two-group cycle;
    /// CSV one flat group per entitlement.
    fn catalog(&mut self) {
        let n = self.rng.gen_range(5..=ENTITLEMENTS.len());
        for (k, word) in ENTITLEMENTS.iter().take(n).enumerate() {
            let ent = format!("{}:{word}", self.app.prefix);
            self.entitlements.push(ent.clone());
            if self.app.csv {
                let id = format!("GRP_{}_{}", self.app.prefix, word).to_ascii_uppercase();
                self.out.groups.push(Group {
                    id: id.clone(),
                    name: id,
                    entitlements: vec![ent],
                    accounts: Vec::new(),
                    groups: Vec::new(),
                });
                self.chains.push(vec![self.out.groups.len() - 1]);
                continue;
            }
            let roll: f64 = self.rng.gen();
            let depth = if roll < 0.4 {
                1
            } else if roll < 0.65 {
                2
            } else if roll < 0.8 {
                3
            } else if roll < 0.9 {
                4
            } else {
                5
            };
            let mut chain = Vec::new();
            for level in 1..=depth {
                let id = self.uuid();
                let name = if level == 1 {
                    format!("{}-{word}-team", self.app.prefix)
                } else {
                    format!("{}-{word}-l{level}", self.app.prefix)
                };
                let g = self.out.groups.len();
                self.out.groups.push(Group {
                    id,
                    name,
                    entitlements: if level == depth {
                        vec![ent.clone()]
                    } else {
                        Vec::new()
                    },
                    accounts: Vec::new(),
                    groups: Vec::new(),
                });
                if let Some(&inner) = chain.last() {
                    self.out.groups[g].groups.push(inner);
                }
                chain.push(g);
            }
            if k % 3 == 1 {
                // A backup group and the innermost group contain each other.
                let id = self.uuid();
                let g = self.out.groups.len();
                self.out.groups.push(Group {
                    id,
                    name: format!("{}-{word}-team-backup", self.app.prefix),
                    entitlements: Vec::new(),
                    accounts: Vec::new(),
                    groups: vec![chain[0]],
                });
                self.out.groups[chain[0]].groups.push(g);
            }
            self.chains.push(chain);
        }
    }

    /// Accounts of the members: active identities hold one to three steady,
    /// approved grants; leavers' accounts are gone or disabled.
    fn members(&mut self) {
        let world = self.world;
        for &i in &world.members[self.index] {
            let spec = &world.identities[i as usize];
            let id = identity_id(i, &spec.kind);
            let alt = spec.alt_app == Some(self.index as u32);
            let name = if alt {
                alt_account_name(i, &spec.kind)
            } else {
                id.clone()
            };
            let user_name = if spec.kind == IdentityKind::Human && !alt {
                format!("{id}@example.com")
            } else {
                name.clone()
            };
            let target_id = if self.app.csv {
                name.clone()
            } else {
                self.uuid()
            };
            let acct = self.out.accounts.len();
            self.out.accounts.push(Account {
                identity: Some(i),
                name,
                user_name,
                display: display_name(i, &spec.kind),
                external: true,
                target_id,
                active: true,
                present: true,
                direct: BTreeSet::new(),
                storied: false,
                planted: false,
                created: false,
                touched: BTreeSet::new(),
                old: Vec::new(),
            });
            let n_ent = self.entitlements.len();
            if spec.is_active() {
                self.actives.push(acct);
                let want = self.rng.gen_range(1..=3usize);
                let mut ks: Vec<usize> = Vec::new();
                // Most people hold the first (read-level) entitlement.
                if self.rng.gen_bool(0.7) {
                    ks.push(0);
                }
                while ks.len() < want {
                    let k = self.rng.gen_range(0..n_ent);
                    if !ks.contains(&k) {
                        ks.push(k);
                    }
                }
                for k in ks {
                    let max_age = self.app.tier().grant_age * 85 / 100;
                    let granted_at = AS_OF - self.rng.gen_range(LOG_SPAN + 2 * DAY..=max_age);
                    let expires_at = self
                        .rng
                        .gen_bool(0.05)
                        .then(|| AS_OF + self.rng.gen_range(7 * DAY..=60 * DAY));
                    self.assign(acct, k, granted_at, expires_at);
                    self.hold(acct, k, true);
                    self.steady.push((acct, k));
                }
            } else {
                self.leavers.push(acct);
                let k = self.rng.gen_range(0..n_ent);
                self.out.accounts[acct].old.push(k);
                let e = self.entitlements[k].clone();
                self.out.accounts[acct].direct.insert(e);
                self.out.accounts[acct].touched.insert(k);
                if self.rng.gen_bool(0.5) {
                    let granted_at = AS_OF - self.rng.gen_range(30 * DAY..=300 * DAY);
                    self.assign(acct, k, granted_at, None);
                }
                // Gone, or still there but disabled: either confers nothing.
                if self.rng.gen_bool(0.5) {
                    self.out.accounts[acct].present = false;
                } else {
                    self.out.accounts[acct].active = false;
                }
            }
        }
    }

    /// Records an approved assignment.
    fn assign(&mut self, acct: usize, k: usize, granted_at: i64, expires_at: Option<i64>) {
        let Some(identity) = self.out.accounts[acct].identity else {
            return;
        };
        let approval = format!("APR-{}", self.rng.gen_range(10_000..100_000));
        self.out.assignments.push(AssignmentOut {
            identity,
            entitlement: self.entitlements[k].clone(),
            granted_at,
            expires_at,
            approval,
        });
    }

    /// Makes the snapshot show `acct` holding entitlement `k`, directly or
    /// (when `may_group`) through a random level of its group chain.
    fn hold(&mut self, acct: usize, k: usize, may_group: bool) {
        if may_group && self.rng.gen_bool(0.5) {
            let chain = &self.chains[k];
            let level = if self.app.csv {
                0
            } else {
                self.rng.gen_range(0..chain.len())
            };
            let g = chain[level];
            self.out.groups[g].accounts.push(acct);
        } else {
            let e = self.entitlements[k].clone();
            self.out.accounts[acct].direct.insert(e);
        }
        self.out.accounts[acct].touched.insert(k);
    }

    /// A random active account and an entitlement with no story yet. Planted
    /// cases prefer accounts no other planted case uses.
    fn fresh_slot(&mut self, for_plant: bool) -> Option<(usize, usize)> {
        let n = self.actives.len();
        if n == 0 {
            return None;
        }
        let start = self.rng.gen_range(0..n);
        let n_ent = self.entitlements.len();
        let passes: &[bool] = if for_plant { &[true, false] } else { &[false] };
        for &exclusive in passes {
            let tries = if for_plant { n } else { n.min(8) };
            for off in 0..tries {
                let acct = self.actives[(start + off) % n];
                if exclusive && self.out.accounts[acct].planted {
                    continue;
                }
                let k0 = self.rng.gen_range(0..n_ent);
                for dk in 0..n_ent {
                    let k = (k0 + dk) % n_ent;
                    if !self.out.accounts[acct].touched.contains(&k) {
                        self.out.accounts[acct].touched.insert(k);
                        if for_plant {
                            self.out.accounts[acct].planted = true;
                        }
                        return Some((acct, k));
                    }
                }
            }
        }
        None
    }

    /// A leaver's account with no story yet.
    fn free_leaver(&mut self) -> Option<usize> {
        let n = self.leavers.len();
        if n == 0 {
            return None;
        }
        let start = self.rng.gen_range(0..n);
        (0..n)
            .map(|off| self.leavers[(start + off) % n])
            .find(|&a| !self.out.accounts[a].storied)
    }

    /// A random request time so that a confirmation `latency` later still
    /// falls before the application's last event.
    fn request_time(&mut self, latency: i64) -> i64 {
        let lo = LOG_START + HOUR;
        let hi = self.app.events_end() - latency - 2 * MINUTE;
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    /// Queues one line; late-evening lines are sometimes replayed at the top
    /// of the next day's file, as overlapping exports do.
    fn push_line(&mut self, t: i64, text: String, place: Place) {
        let day = day_of(t);
        let (file, order) = match place {
            Place::Normal => (day, t),
            Place::Before(other) => (day_of(other), other - 1),
            Place::NextFile => ((day + 1).min(DAY_FILES - 1), t),
        };
        let file = if self.app.csv { LEGACY_FILE } else { file };
        self.seq += 1;
        let replay = !self.app.csv
            && place == Place::Normal
            && day + 1 < DAY_FILES
            && (t - first_day()).rem_euclid(DAY) >= 22 * HOUR
            && self.rng.gen_bool(0.25);
        if replay {
            // Overlapping exports: the next day's file repeats the line.
            self.out.lines.push(LineOut {
                file: day + 1,
                order: i64::MIN,
                seq: self.seq,
                text: text.clone(),
            });
            self.out.replays += 1;
            self.lines += 1;
        }
        self.out.lines.push(LineOut {
            file,
            order,
            seq: self.seq,
            text,
        });
        self.lines += 1;
    }

    /// Queues one CloudEvent, from the workflow engine or this connector.
    fn event<D: Serialize>(
        &mut self,
        t: i64,
        id: &str,
        from_workflow: bool,
        ty: &'static str,
        data: D,
        place: Place,
    ) -> Result<(), GenerateError> {
        let source = if from_workflow {
            WORKFLOWS
        } else {
            self.source.as_str()
        };
        let env = Envelope {
            specversion: "1.0",
            id,
            source,
            ty,
            time: timestamp(t),
            datacontenttype: "application/json",
            data,
        };
        let text = serde_json::to_string(&env).map_err(|e| GenerateError::Serialize {
            what: "a sync-log event".into(),
            message: e.to_string(),
        })?;
        self.push_line(t, text, place);
        Ok(())
    }

    /// The next event id of this connector.
    fn connector_id(&mut self) -> String {
        self.connector_seq += 1;
        format!("{}-{:07}", self.app.connector, self.connector_seq)
    }

    /// Writes one change's events and counts its status. Returns its key.
    fn change(
        &mut self,
        workflow_seq: &mut u64,
        op: Operation,
        acct: usize,
        k: Option<usize>,
        t_req: i64,
        fate: Fate,
    ) -> Result<String, GenerateError> {
        use crate::ingest::raw::event_type as ty;
        self.change_seq += 1;
        let key = format!("chg-{:05}-{:06}", self.index, self.change_seq);
        let identity = self.out.accounts[acct]
            .identity
            .map(|i| identity_id(i, &self.world.identities[i as usize].kind))
            .unwrap_or_default();
        let entitlement = k.map(|k| self.entitlements[k].clone());
        let approval = format!("APR-{}", self.rng.gen_range(10_000..100_000));
        let ticket = format!("REQ-{}", self.rng.gen_range(10_000..100_000));
        let app_id = self.app.id.clone();
        let late = self.rng.gen_bool(0.01);
        let ooo = !late && self.rng.gen_bool(0.03);
        let redeliver = self.rng.gen_bool(0.03);
        let requested = |_: ()| Requested {
            idempotency_key: &key,
            operation: op.as_str(),
            identity: &identity,
            application: &app_id,
            entitlement: entitlement.as_deref(),
            requester: "iga-workflow",
            approval: &approval,
            ticket: &ticket,
        };
        *workflow_seq += 1;
        let wf = format!("wf-{:09}", *workflow_seq);
        let place = if late { Place::NextFile } else { Place::Normal };
        self.event(t_req, &wf, true, ty::CHANGE_REQUESTED, requested(()), place)?;
        let attempt = |n: u32, outcome: &'static str, error: Option<&'static str>| Attempted {
            idempotency_key: &key,
            attempt: n,
            outcome,
            error,
        };
        let last = match fate {
            Fate::Confirmed { at, retries } => {
                let step = ((at - t_req) / (i64::from(retries) + 2)).max(1);
                for n in 1..=retries {
                    let err = RETRY_ERRORS[self.rng.gen_range(0..RETRY_ERRORS.len())];
                    let id = self.connector_id();
                    let t = t_req + i64::from(n) * step;
                    self.event(
                        t,
                        &id,
                        false,
                        ty::CHANGE_ATTEMPTED,
                        attempt(n, "retryable_error", Some(err)),
                        Place::Normal,
                    )?;
                }
                let id = self.connector_id();
                let t = t_req + i64::from(retries + 1) * step;
                self.event(
                    t.min(at),
                    &id,
                    false,
                    ty::CHANGE_ATTEMPTED,
                    attempt(retries + 1, "success", None),
                    Place::Normal,
                )?;
                let id = self.connector_id();
                let method = if self.rng.gen_bool(0.8) {
                    "read_back"
                } else {
                    "target_event"
                };
                let place = if ooo {
                    Place::Before(t_req)
                } else {
                    Place::Normal
                };
                self.event(
                    at,
                    &id,
                    false,
                    ty::CHANGE_CONFIRMED,
                    Confirmed {
                        idempotency_key: &key,
                        method,
                    },
                    place,
                )?;
                self.out.changes.confirmed += 1;
                at
            }
            Fate::Pending { retries, accepted } => {
                let mut t = t_req;
                for n in 1..=retries {
                    t += 10;
                    let err = RETRY_ERRORS[self.rng.gen_range(0..RETRY_ERRORS.len())];
                    let id = self.connector_id();
                    self.event(
                        t,
                        &id,
                        false,
                        ty::CHANGE_ATTEMPTED,
                        attempt(n, "retryable_error", Some(err)),
                        Place::Normal,
                    )?;
                }
                if accepted {
                    t += 10;
                    let id = self.connector_id();
                    self.event(
                        t,
                        &id,
                        false,
                        ty::CHANGE_ATTEMPTED,
                        attempt(retries + 1, "success", None),
                        Place::Normal,
                    )?;
                }
                self.out.changes.pending += 1;
                t + 10
            }
            Fate::Failed => {
                let err = RETRY_ERRORS[self.rng.gen_range(0..RETRY_ERRORS.len())];
                for n in 1..=2u32 {
                    let id = self.connector_id();
                    self.event(
                        t_req + i64::from(n) * 5 * MINUTE,
                        &id,
                        false,
                        ty::CHANGE_ATTEMPTED,
                        attempt(n, "retryable_error", Some(err)),
                        Place::Normal,
                    )?;
                }
                let permanent = "permission denied by the target";
                let id = self.connector_id();
                self.event(
                    t_req + 15 * MINUTE,
                    &id,
                    false,
                    ty::CHANGE_ATTEMPTED,
                    attempt(3, "error", Some(permanent)),
                    Place::Normal,
                )?;
                let id = self.connector_id();
                let reason = format!("gave up after 3 attempts: {permanent}");
                self.event(
                    t_req + 16 * MINUTE,
                    &id,
                    false,
                    ty::CHANGE_FAILED,
                    Failed {
                        idempotency_key: &key,
                        reason: &reason,
                    },
                    Place::Normal,
                )?;
                self.out.changes.failed += 1;
                t_req + 16 * MINUTE
            }
        };
        if redeliver && last > t_req + 2 {
            // The workflow engine sends the same change again under a new
            // event id; it is one change, measured from the first request.
            *workflow_seq += 1;
            let wf = format!("wf-{:09}", *workflow_seq);
            let t = t_req + (last - t_req) / 2;
            self.event(
                t,
                &wf,
                true,
                ty::CHANGE_REQUESTED,
                requested(()),
                Place::Normal,
            )?;
            self.out.redeliveries += 1;
        }
        Ok(key)
    }

    /// Records an expected finding.
    fn finding(&mut self, policy: &str, subject: String) {
        self.out.findings.push(TruthFinding {
            policy_id: policy.to_owned(),
            subject,
        });
    }

    /// The subject id of an effective grant.
    fn grant_subject(&self, acct: usize, k: usize) -> String {
        format!(
            "grant:{}/{}/{}",
            self.app.id, self.out.accounts[acct].name, self.entitlements[k]
        )
    }

    /// Realises one planted violation, if this application can host it.
    fn plant(&mut self, plant: Plant, workflow_seq: &mut u64) -> Result<(), GenerateError> {
        let tier = *self.app.tier();
        let taken_at = self.app.taken_at;
        match plant {
            Plant::SyncLatency => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let latency = tier.latency + self.rng.gen_range(5 * MINUTE..=tier.latency);
                let t_req = self.request_time(latency);
                let at = t_req + latency;
                let granted_at = t_req - self.rng.gen_range(0..=30 * MINUTE);
                self.assign(acct, k, granted_at, None);
                let fate = Fate::Confirmed { at, retries: 2 };
                let key =
                    self.change(workflow_seq, Operation::Grant, acct, Some(k), t_req, fate)?;
                if at <= taken_at {
                    self.hold(acct, k, false);
                }
                self.finding("sync-latency", format!("change:{key}"));
            }
            Plant::SyncOverdue => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let t_req = AS_OF
                    - tier.latency
                    - self
                        .rng
                        .gen_range(10 * MINUTE..=tier.latency.min(12 * HOUR));
                let granted_at = t_req - self.rng.gen_range(0..=30 * MINUTE);
                self.assign(acct, k, granted_at, None);
                let fate = Fate::Pending {
                    retries: 1,
                    accepted: true,
                };
                let key =
                    self.change(workflow_seq, Operation::Grant, acct, Some(k), t_req, fate)?;
                if granted_at <= taken_at {
                    self.out.drift.not_provisioned += 1;
                }
                self.finding("sync-overdue", format!("change:{key}"));
            }
            Plant::RevocationLate => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let latency = tier.revocation
                    + self
                        .rng
                        .gen_range(5 * MINUTE..=(tier.revocation / 2).min(12 * HOUR));
                let t_req = self.request_time(latency);
                let at = t_req + latency;
                let fate = Fate::Confirmed { at, retries: 1 };
                let key =
                    self.change(workflow_seq, Operation::Revoke, acct, Some(k), t_req, fate)?;
                if at > taken_at {
                    // The snapshot predates the (late) confirmed revocation.
                    self.hold(acct, k, false);
                }
                self.finding("revocation-unconfirmed", format!("change:{key}"));
            }
            Plant::RevocationPending | Plant::FailedRevoke => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let t_req = AS_OF
                    - tier.revocation
                    - self
                        .rng
                        .gen_range(10 * MINUTE..=(tier.revocation / 2).min(12 * HOUR));
                let fate = if plant == Plant::FailedRevoke {
                    Fate::Failed
                } else {
                    Fate::Pending {
                        retries: 2,
                        accepted: false,
                    }
                };
                let key =
                    self.change(workflow_seq, Operation::Revoke, acct, Some(k), t_req, fate)?;
                // Not confirmed, so it has not happened: the access remains.
                self.hold(acct, k, false);
                self.out.drift.not_revoked += 1;
                if plant == Plant::FailedRevoke {
                    self.finding("change-failed", format!("change:{key}"));
                }
                self.finding("revocation-unconfirmed", format!("change:{key}"));
                let subject = self.grant_subject(acct, k);
                self.finding("not-revoked", subject);
            }
            Plant::FailedGrant => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let t_req = self.request_time(HOUR);
                let granted_at = t_req - self.rng.gen_range(0..=30 * MINUTE);
                self.assign(acct, k, granted_at, None);
                let key = self.change(
                    workflow_seq,
                    Operation::Grant,
                    acct,
                    Some(k),
                    t_req,
                    Fate::Failed,
                )?;
                if granted_at <= taken_at {
                    self.out.drift.not_provisioned += 1;
                }
                self.finding("change-failed", format!("change:{key}"));
            }
            Plant::GrantAge => {
                let candidates: Vec<usize> = (0..self.steady.len())
                    .filter(|&s| !self.out.accounts[self.steady[s].0].planted)
                    .collect();
                let pick = if candidates.is_empty() {
                    (!self.steady.is_empty()).then(|| self.rng.gen_range(0..self.steady.len()))
                } else {
                    Some(candidates[self.rng.gen_range(0..candidates.len())])
                };
                let Some(s) = pick else {
                    return Ok(());
                };
                let (acct, k) = self.steady.swap_remove(s);
                self.out.accounts[acct].planted = true;
                let identity = self.out.accounts[acct].identity;
                let ent = self.entitlements[k].clone();
                let old = AS_OF - tier.grant_age - self.rng.gen_range(DAY..=60 * DAY);
                if let Some(a) = self
                    .out
                    .assignments
                    .iter_mut()
                    .find(|a| Some(a.identity) == identity && a.entitlement == ent)
                {
                    a.granted_at = old;
                    a.expires_at = None;
                }
                let subject = self.grant_subject(acct, k);
                self.finding("grant-age", subject);
            }
            Plant::ExpiredGrant => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let granted_at = AS_OF - self.rng.gen_range(10 * DAY..=20 * DAY);
                let expires_at = AS_OF - self.rng.gen_range(HOUR..=5 * DAY);
                self.assign(acct, k, granted_at, Some(expires_at));
                self.hold(acct, k, true);
                self.out.drift.expired_still_effective += 1;
                let subject = self.grant_subject(acct, k);
                self.finding("expired-grant", subject);
            }
            Plant::NotRevokedLeaver => {
                let Some(acct) = self.free_leaver() else {
                    return Ok(());
                };
                let Some(&k) = self.out.accounts[acct].old.first() else {
                    return Ok(());
                };
                let ent = self.entitlements[k].clone();
                let identity = self.out.accounts[acct].identity;
                let a = &mut self.out.accounts[acct];
                a.storied = true;
                a.planted = true;
                a.present = true;
                a.active = true;
                a.direct = BTreeSet::from([ent.clone()]);
                let has = self
                    .out
                    .assignments
                    .iter()
                    .any(|a| Some(a.identity) == identity && a.entitlement == ent);
                if !has {
                    // The leaver's old approval is still on record, so the
                    // remaining access is a missed revocation, not a local grant.
                    let granted_at = AS_OF - self.rng.gen_range(30 * DAY..=300 * DAY);
                    self.assign(acct, k, granted_at, None);
                }
                self.out.drift.not_revoked += 1;
                let subject = self.grant_subject(acct, k);
                self.finding("not-revoked", subject);
            }
            Plant::NotRevokedNested => {
                let latency = self.rng.gen_range(MINUTE..=tier.revocation / 2);
                let lo = LOG_START + HOUR;
                let hi = taken_at.min(self.app.events_end()) - MINUTE - latency;
                if hi <= lo {
                    return Ok(());
                }
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let t_req = self.rng.gen_range(lo..=hi);
                let fate = Fate::Confirmed {
                    at: t_req + latency,
                    retries: 0,
                };
                self.change(workflow_seq, Operation::Revoke, acct, Some(k), t_req, fate)?;
                // The direct grant is gone, but a forgotten group still
                // confers the entitlement, up to five levels up.
                self.extra_groups += 1;
                let ent = self.entitlements[k].clone();
                let depth = if self.app.csv {
                    1
                } else {
                    self.rng.gen_range(2..=5)
                };
                let mut inner: Option<usize> = None;
                for level in 1..=depth {
                    let (id, name) = if self.app.csv {
                        let n = format!("GRP_LEGACY_{}", self.extra_groups);
                        (n.clone(), n)
                    } else {
                        (
                            self.uuid(),
                            format!("legacy-{}-{}-l{level}", self.app.prefix, self.extra_groups),
                        )
                    };
                    let g = self.out.groups.len();
                    self.out.groups.push(Group {
                        id,
                        name,
                        entitlements: if level == depth {
                            vec![ent.clone()]
                        } else {
                            Vec::new()
                        },
                        accounts: if level == 1 { vec![acct] } else { Vec::new() },
                        groups: inner.into_iter().collect(),
                    });
                    inner = Some(g);
                }
                self.out.drift.not_revoked += 1;
                let subject = self.grant_subject(acct, k);
                self.finding("not-revoked", subject);
            }
            Plant::Unauthorized => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                self.hold(acct, k, false);
                self.out.drift.unauthorized += 1;
                let subject = self.grant_subject(acct, k);
                self.finding("unauthorized-access", subject);
            }
            Plant::Orphan => {
                self.extra_groups += 1;
                let name = format!("tmp_migration_{}_{}", self.index, self.extra_groups);
                let k = self.rng.gen_range(0..self.entitlements.len());
                let target_id = if self.app.csv {
                    name.clone()
                } else {
                    self.uuid()
                };
                self.out.accounts.push(Account {
                    identity: None,
                    name: name.clone(),
                    user_name: name.clone(),
                    display: "Temporary migration account".into(),
                    external: false,
                    target_id,
                    active: true,
                    present: true,
                    direct: BTreeSet::from([self.entitlements[k].clone()]),
                    storied: true,
                    planted: true,
                    created: true,
                    touched: BTreeSet::from([k]),
                    old: Vec::new(),
                });
                self.out.drift.orphan_account += 1;
                self.finding("orphan-account", format!("account:{}/{name}", self.app.id));
            }
            Plant::MissedEvent => {
                let Some((acct, k)) = self.fresh_slot(true) else {
                    return Ok(());
                };
                let granted_at = taken_at - self.rng.gen_range(HOUR..=5 * DAY);
                self.assign(acct, k, granted_at, None);
                self.out.drift.missed_event += 1;
                let identity = self.out.accounts[acct]
                    .identity
                    .map(|i| identity_id(i, &self.world.identities[i as usize].kind))
                    .unwrap_or_default();
                let subject = format!(
                    "assignment:{}/{identity}/{}",
                    self.app.id, self.entitlements[k]
                );
                self.finding("missed-event", subject);
            }
        }
        Ok(())
    }

    /// Plants this application's violations.
    pub(crate) fn plant_all(&mut self, workflow_seq: &mut u64) -> Result<(), GenerateError> {
        for plant in self.app.plants.clone() {
            self.plant(plant, workflow_seq)?;
        }
        if self.app.silent {
            self.finding(
                "connector-silent",
                format!("connector:{}", self.app.connector),
            );
        }
        if self.app.stale {
            self.finding("snapshot-stale", format!("snapshot:{}", self.app.id));
        }
        Ok(())
    }

    /// One compliant change; `false` when no candidate was found.
    fn compliant_change(&mut self, workflow_seq: &mut u64) -> Result<bool, GenerateError> {
        let tier = *self.app.tier();
        let taken_at = self.app.taken_at;
        let retries = if self.rng.gen_bool(0.15) {
            self.rng.gen_range(1..=2)
        } else {
            0
        };
        let roll: f64 = self.rng.gen();
        if roll < 0.30 {
            let Some((acct, k)) = self.fresh_slot(false) else {
                return Ok(false);
            };
            if !self.app.silent && self.rng.gen_bool(0.03) {
                // Young and pending: well inside the sync-latency target.
                let t_req = AS_OF - self.rng.gen_range(2 * MINUTE..=tier.latency / 2);
                let granted_at = t_req - self.rng.gen_range(0..=30 * MINUTE);
                self.assign(acct, k, granted_at, None);
                let fate = Fate::Pending {
                    retries: 0,
                    accepted: self.rng.gen_bool(0.5),
                };
                self.change(workflow_seq, Operation::Grant, acct, Some(k), t_req, fate)?;
                if granted_at <= taken_at {
                    self.out.drift.not_provisioned += 1;
                }
                return Ok(true);
            }
            let latency = self.rng.gen_range(30..=tier.latency / 2);
            let t_req = self.request_time(latency);
            let granted_at = t_req - self.rng.gen_range(0..=30 * MINUTE);
            self.assign(acct, k, granted_at, None);
            let at = t_req + latency;
            let fate = Fate::Confirmed { at, retries };
            self.change(workflow_seq, Operation::Grant, acct, Some(k), t_req, fate)?;
            if at <= taken_at {
                self.hold(acct, k, true);
            }
        } else if roll < 0.55 {
            if self.steady.is_empty() {
                return Ok(false);
            }
            let (acct, k) = self.steady[self.rng.gen_range(0..self.steady.len())];
            let latency = self.rng.gen_range(30..=tier.latency / 2);
            let t_req = self.request_time(latency);
            let fate = Fate::Confirmed {
                at: t_req + latency,
                retries,
            };
            self.change(workflow_seq, Operation::Update, acct, Some(k), t_req, fate)?;
        } else if roll < 0.75 {
            let Some((acct, k)) = self.fresh_slot(false) else {
                return Ok(false);
            };
            let latency = self.rng.gen_range(30..=tier.revocation / 2);
            let t_req = self.request_time(latency);
            let at = t_req + latency;
            let fate = Fate::Confirmed { at, retries };
            self.change(workflow_seq, Operation::Revoke, acct, Some(k), t_req, fate)?;
            if at > taken_at {
                // Revoked after the snapshot was taken: still in it, not drift.
                self.hold(acct, k, false);
            }
        } else if roll < 0.85 {
            let n = self.actives.len();
            if n == 0 {
                return Ok(false);
            }
            let start = self.rng.gen_range(0..n);
            let Some(acct) = (0..n.min(8))
                .map(|o| self.actives[(start + o) % n])
                .find(|&a| !self.out.accounts[a].created)
            else {
                return Ok(false);
            };
            self.out.accounts[acct].created = true;
            let latency = self.rng.gen_range(30..=tier.latency / 2);
            let t_req = self.request_time(latency);
            let fate = Fate::Confirmed {
                at: t_req + latency,
                retries,
            };
            self.change(
                workflow_seq,
                Operation::AccountCreate,
                acct,
                None,
                t_req,
                fate,
            )?;
        } else {
            let Some(acct) = self.free_leaver() else {
                return Ok(false);
            };
            self.out.accounts[acct].storied = true;
            let op = if self.rng.gen_bool(0.7) {
                Operation::AccountDisable
            } else {
                Operation::AccountDelete
            };
            let latency = self.rng.gen_range(30..=tier.revocation / 2);
            let t_req = self.request_time(latency);
            let at = t_req + latency;
            let fate = Fate::Confirmed { at, retries };
            self.change(workflow_seq, op, acct, None, t_req, fate)?;
            let a = &mut self.out.accounts[acct];
            if at > taken_at {
                // The snapshot predates the confirmed removal.
                a.present = true;
                a.active = true;
            } else if op == Operation::AccountDelete {
                a.present = false;
            } else {
                a.present = true;
                a.active = false;
            }
        }
        Ok(true)
    }

    /// Compliant changes until `target` lines have been produced.
    pub(crate) fn fill_changes(
        &mut self,
        target: u64,
        workflow_seq: &mut u64,
    ) -> Result<(), GenerateError> {
        let mut misses = 0;
        while self.lines < target && misses < 64 {
            if self.compliant_change(workflow_seq)? {
                misses = 0;
            } else {
                misses += 1;
            }
        }
        Ok(())
    }

    /// The heartbeat schedule: (last heartbeat, interval, available slots).
    pub(crate) fn heartbeat_slots(&self) -> (i64, i64, u64) {
        let hb = self.app.tier().heartbeat;
        let interval = hb / 2;
        let last = if self.app.silent {
            self.app.events_end() - 5 * MINUTE
        } else {
            AS_OF - hb / 3
        };
        let slots = ((last - LOG_START) / interval + 1).max(1) as u64;
        (last, interval, slots)
    }

    /// Connector errors (recent ones only on planted failing connectors),
    /// then heartbeats until `target` lines have been produced: at least one,
    /// the last well within the window unless the connector is planted
    /// silent, at most one per slot.
    pub(crate) fn connector_events(&mut self, target: u64) -> Result<(), GenerateError> {
        use crate::ingest::raw::event_type as ty;
        let hb = self.app.tier().heartbeat;
        let connector = self.app.connector.clone();
        if self.app.failing {
            let n = self.rng.gen_range(1..=3);
            for _ in 0..n {
                let t = AS_OF - self.rng.gen_range(MINUTE..=hb * 4 / 5);
                let err = CONNECTOR_ERRORS[self.rng.gen_range(0..CONNECTOR_ERRORS.len())];
                let id = self.connector_id();
                let data = ConnectorData {
                    connector: &connector,
                    error: Some(err),
                };
                self.event(t, &id, false, ty::CONNECTOR_ERROR, data, Place::Normal)?;
            }
            self.finding("connector-failing", format!("connector:{connector}"));
        } else if self.rng.gen_bool(0.1) {
            // An old error, long outside the window: not failing.
            let hi = (AS_OF - hb - 30 * MINUTE).min(self.app.events_end()) - 1;
            let lo = LOG_START + HOUR;
            if hi > lo {
                let t = self.rng.gen_range(lo..=hi);
                let err = CONNECTOR_ERRORS[self.rng.gen_range(0..CONNECTOR_ERRORS.len())];
                let id = self.connector_id();
                let data = ConnectorData {
                    connector: &connector,
                    error: Some(err),
                };
                self.event(t, &id, false, ty::CONNECTOR_ERROR, data, Place::Normal)?;
            }
        }
        let (last, interval, slots) = self.heartbeat_slots();
        let mut n: u64 = 0;
        while n < slots && (n == 0 || self.lines < target) {
            let t = last - n as i64 * interval;
            let id = chrono::DateTime::from_timestamp(t, 0)
                .map(|d| format!("hb-{}", d.format("%Y%m%dT%H%M%SZ")))
                .unwrap_or_default();
            let data = ConnectorData {
                connector: &connector,
                error: None,
            };
            self.event(t, &id, false, ty::HEARTBEAT, data, Place::Normal)?;
            n += 1;
        }
        Ok(())
    }

    /// Finishes the slice.
    pub(crate) fn finish(mut self) -> AppOutput {
        for g in &mut self.out.groups {
            g.accounts.sort_unstable();
            g.accounts.dedup();
        }
        self.out.lines.sort_by_key(|l| (l.file, l.order, l.seq));
        // INVARIANT: leaver accounts (the only ones that may be absent) hold
        // their access directly, never through a group, so no group names a
        // member the snapshot lacks.
        self.out
    }
}
