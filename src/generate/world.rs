//! The world a workload is drawn from: tiers and their targets, the
//! identities, the applications, who has an account where, and which
//! application hosts which planted violation.
//!
//! Everything here is small per identity (a few bytes) so that a million
//! identities fit comfortably; names are derived from indices on demand
//! rather than stored.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::ingest::model::{IdentityKind, IdentityStatus};

/// One minute, in seconds.
pub(crate) const MINUTE: i64 = 60;
/// One hour, in seconds.
pub(crate) const HOUR: i64 = 3_600;
/// One day, in seconds.
pub(crate) const DAY: i64 = 86_400;
/// `collected_at` (and so the default `--as-of`): 2026-11-20T12:00:00Z, in
/// seconds since the Unix epoch. Fixed, never the wall clock.
pub(crate) const AS_OF: i64 = 1_795_176_000;
/// How far back the sync logs reach: four days, so that a late confirmation
/// of a low-tier revocation (72h window plus a margin) still fits.
pub(crate) const LOG_SPAN: i64 = 4 * DAY;
/// The first instant any sync-log event may carry.
pub(crate) const LOG_START: i64 = AS_OF - LOG_SPAN;

/// A tier's targets in seconds, mirroring `policies/tiers.yaml` (a unit test
/// checks that they agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tier {
    /// The tier's name.
    pub(crate) name: &'static str,
    /// `max_sync_latency`.
    pub(crate) latency: i64,
    /// `revocation_window`.
    pub(crate) revocation: i64,
    /// `max_grant_age`.
    pub(crate) grant_age: i64,
    /// `heartbeat_window`.
    pub(crate) heartbeat: i64,
    /// `max_snapshot_age`.
    pub(crate) snapshot_age: i64,
}

/// The shipped tiers, strictest first.
pub(crate) const TIERS: [Tier; 4] = [
    Tier {
        name: "critical",
        latency: 15 * MINUTE,
        revocation: HOUR,
        grant_age: 90 * DAY,
        heartbeat: 15 * MINUTE,
        snapshot_age: DAY,
    },
    Tier {
        name: "high",
        latency: HOUR,
        revocation: 4 * HOUR,
        grant_age: 180 * DAY,
        heartbeat: HOUR,
        snapshot_age: 3 * DAY,
    },
    Tier {
        name: "medium",
        latency: 4 * HOUR,
        revocation: DAY,
        grant_age: 365 * DAY,
        heartbeat: 6 * HOUR,
        snapshot_age: 7 * DAY,
    },
    Tier {
        name: "low",
        latency: DAY,
        revocation: 3 * DAY,
        grant_age: 730 * DAY,
        heartbeat: DAY,
        snapshot_age: 30 * DAY,
    },
];

/// A violation the generator plants on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Plant {
    /// A grant confirmed later than `max_sync_latency`.
    SyncLatency,
    /// A grant still pending past `max_sync_latency`.
    SyncOverdue,
    /// A revocation confirmed later than `revocation_window`.
    RevocationLate,
    /// A revocation still pending past its window; the access remains.
    RevocationPending,
    /// A revocation the connector gave up on, past its window; the access remains.
    FailedRevoke,
    /// A grant the connector gave up on.
    FailedGrant,
    /// A desired grant older than `max_grant_age`.
    GrantAge,
    /// A time-bounded grant past its end, still held.
    ExpiredGrant,
    /// A terminated or disabled identity whose account still holds access.
    NotRevokedLeaver,
    /// A confirmed direct revoke, but a nested group still grants the access.
    NotRevokedNested,
    /// A direct grant in the target that nobody approved.
    Unauthorized,
    /// An account no identity stands behind.
    Orphan,
    /// An approved assignment missing in the target with no logged change.
    MissedEvent,
}

/// The catalogue of plants.
impl Plant {
    /// The per-subject plants, in planting order.
    pub(crate) const ALL: [Plant; 13] = [
        Plant::SyncLatency,
        Plant::SyncOverdue,
        Plant::RevocationLate,
        Plant::RevocationPending,
        Plant::FailedRevoke,
        Plant::FailedGrant,
        Plant::GrantAge,
        Plant::ExpiredGrant,
        Plant::NotRevokedLeaver,
        Plant::NotRevokedNested,
        Plant::Unauthorized,
        Plant::Orphan,
        Plant::MissedEvent,
    ];
}

/// An identity, compactly.
#[derive(Clone, Debug)]
pub(crate) struct IdentitySpec {
    /// Human or which non-human kind.
    pub(crate) kind: IdentityKind,
    /// Lifecycle status.
    pub(crate) status: IdentityStatus,
    /// Index of the owning human (non-humans only).
    pub(crate) owner: u32,
    /// The application in which its account has its own name, if any.
    pub(crate) alt_app: Option<u32>,
}

/// Predicates.
impl IdentitySpec {
    /// Whether its approved access is desired.
    pub(crate) fn is_active(&self) -> bool {
        self.status == IdentityStatus::Active
    }
}

/// An application and its role in the workload.
#[derive(Clone, Debug)]
pub(crate) struct AppSpec {
    /// Application id.
    pub(crate) id: String,
    /// Human name.
    pub(crate) name: String,
    /// Its connector's id (one connector per application).
    pub(crate) connector: String,
    /// Short prefix of its entitlement names.
    pub(crate) prefix: &'static str,
    /// Index into [`TIERS`].
    pub(crate) tier: usize,
    /// CSV export instead of SCIM.
    pub(crate) csv: bool,
    /// Planted: the connector falls silent.
    pub(crate) silent: bool,
    /// Planted: the connector reports errors within its window.
    pub(crate) failing: bool,
    /// Planted: the snapshot is older than the tier allows.
    pub(crate) stale: bool,
    /// When its snapshot was taken (epoch seconds).
    pub(crate) taken_at: i64,
    /// The per-subject violations it hosts.
    pub(crate) plants: Vec<Plant>,
}

/// Derived values.
impl AppSpec {
    /// The tier's targets.
    pub(crate) fn tier(&self) -> &'static Tier {
        &TIERS[self.tier.min(TIERS.len() - 1)]
    }

    /// No event of this application may be at or after this instant.
    pub(crate) fn events_end(&self) -> i64 {
        let hb = self.tier().heartbeat;
        if self.silent {
            AS_OF - hb - hb.max(HOUR) - 10 * MINUTE
        } else {
            AS_OF - MINUTE
        }
    }
}

/// Everything drawn before the per-application pass.
#[derive(Debug)]
pub(crate) struct World {
    /// Identities by index.
    pub(crate) identities: Vec<IdentitySpec>,
    /// Applications by index.
    pub(crate) apps: Vec<AppSpec>,
    /// Members (identity indices, ascending) of each application.
    pub(crate) members: Vec<Vec<u32>>,
}

/// First names of generated people.
const FIRST: [&str; 24] = [
    "olivia", "liam", "emma", "noah", "ava", "mateo", "sofia", "lucas", "mia", "hiro", "priya",
    "kofi", "ines", "omar", "grace", "dan", "kate", "frank", "alice", "bob", "carol", "erin",
    "jamal", "maria",
];
/// Last names of generated people.
const LAST: [&str; 24] = [
    "chen", "nguyen", "okafor", "smith", "rossi", "tanaka", "shah", "duarte", "kim", "reyes",
    "moreau", "li", "walsh", "price", "berg", "obrien", "garcia", "mueller", "silva", "novak",
    "haddad", "larsen", "dubois", "costa",
];
/// Words for non-human identity names.
const WORDS: [&str; 16] = [
    "billing",
    "ledger",
    "deploy",
    "backup",
    "etl",
    "reporting",
    "payroll",
    "search",
    "ingest",
    "metrics",
    "export",
    "sync",
    "scanner",
    "release",
    "audit",
    "mailer",
];
/// Application kinds: id stem, human name, entitlement prefix.
const APP_KINDS: [(&str, &str, &str); 16] = [
    ("payments-db", "Payments database", "db"),
    ("github-org", "GitHub organisation", "repo"),
    ("crm-saas", "CRM", "crm"),
    ("hr-portal", "HR portal", "hr"),
    ("erp", "ERP", "erp"),
    ("wiki", "Wiki", "wiki"),
    ("ticketing", "Ticketing", "tix"),
    ("vpn", "VPN", "vpn"),
    ("aws-prod", "AWS production account", "aws"),
    ("data-warehouse", "Data warehouse", "dwh"),
    ("chat", "Chat", "chat"),
    ("ci", "CI service", "ci"),
    ("vault", "Secrets vault", "vault"),
    ("k8s-prod", "Kubernetes production", "k8s"),
    ("billing", "Billing", "bill"),
    ("support-desk", "Support desk", "desk"),
];

/// The identity id for index `i`.
pub(crate) fn identity_id(i: u32, kind: &IdentityKind) -> String {
    let word = WORDS[i as usize % WORDS.len()];
    match kind {
        IdentityKind::Human => format!(
            "{}.{}.{i}",
            FIRST[i as usize % FIRST.len()],
            LAST[(i as usize / FIRST.len()) % LAST.len()]
        ),
        IdentityKind::ServiceAccount => format!("svc-{word}-{i}"),
        IdentityKind::ApiKey => format!("key-{word}-{i}"),
        IdentityKind::Bot => format!("bot-{word}-{i}"),
        IdentityKind::Workload => format!("wl-{word}-{i}"),
    }
}

/// The display name for index `i`.
pub(crate) fn display_name(i: u32, kind: &IdentityKind) -> String {
    let word = WORDS[i as usize % WORDS.len()];
    match kind {
        IdentityKind::Human => {
            let cap = |s: &str| {
                let mut c = s.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            };
            format!(
                "{} {}",
                cap(FIRST[i as usize % FIRST.len()]),
                cap(LAST[(i as usize / FIRST.len()) % LAST.len()])
            )
        }
        IdentityKind::ServiceAccount => format!("Service account {word} {i}"),
        IdentityKind::ApiKey => format!("API key {word} {i}"),
        IdentityKind::Bot => format!("Bot {word} {i}"),
        IdentityKind::Workload => format!("Workload {word} {i}"),
    }
}

/// The account name an identity uses in its `alt_app` (never equal to any
/// identity id: ids contain `.` or `-`, these use `_`).
pub(crate) fn alt_account_name(i: u32, kind: &IdentityKind) -> String {
    match kind {
        IdentityKind::Human => format!(
            "{}{}_{i}",
            &FIRST[i as usize % FIRST.len()][..1],
            LAST[(i as usize / FIRST.len()) % LAST.len()]
        ),
        other => identity_id(i, other).replace('-', "_"),
    }
}

/// How many of each per-subject violation to plant: about 0.25% of the
/// identities, at least one.
pub(crate) fn plants_per_kind(identities: u32) -> usize {
    (identities as usize / 400).max(1)
}

/// How many connectors to silence, connectors to fail and snapshots to make
/// stale: about 0.5% of the applications, at least one.
pub(crate) fn app_plants(applications: u32) -> usize {
    (applications as usize / 200).max(1)
}

/// Draws the world for the given sizes.
pub(crate) fn draw(identities: u32, applications: u32, rng: &mut ChaCha8Rng) -> World {
    let n_apps = applications.max(1);
    let mut apps: Vec<AppSpec> = (0..n_apps)
        .map(|a| {
            let (stem, name, prefix) = APP_KINDS[a as usize % APP_KINDS.len()];
            let roll: f64 = rng.gen();
            let tier = if roll < 0.1 {
                0
            } else if roll < 0.3 {
                1
            } else if roll < 0.7 {
                2
            } else {
                3
            };
            // Exactly every tenth application exports CSV; small worlds get
            // one in their last application so both formats always appear.
            let csv = a % 10 == 9 || ((3..10).contains(&n_apps) && a == n_apps - 1);
            AppSpec {
                id: format!("{stem}-{a:05}"),
                name: format!("{name} {a}"),
                connector: format!("{stem}-sync-{a:05}"),
                prefix,
                tier,
                csv,
                silent: false,
                failing: false,
                stale: false,
                taken_at: 0,
                plants: Vec::new(),
            }
        })
        .collect();

    // Connector and snapshot roles, on disjoint applications when there are
    // enough of them; application 0 never goes silent so it can host plants.
    let k = app_plants(n_apps);
    let mut order: Vec<usize> = (0..n_apps as usize).collect();
    order.shuffle(rng);
    if n_apps >= 2 {
        let pos = order.iter().position(|&a| a == 0).unwrap_or(0);
        let last = order.len() - 1;
        order.swap(pos, last);
        let usable = order.len() - 1;
        let mut next = 0usize;
        for (role, count) in [(0, k), (1, k), (2, k)] {
            for _ in 0..count {
                let a = order[next % usable];
                match role {
                    0 => apps[a].silent = true,
                    1 if !apps[a].silent => apps[a].failing = true,
                    2 => apps[a].stale = true,
                    _ => {}
                }
                next += 1;
            }
        }
        // With very few applications the failing role may have landed on a
        // silent one; give it to the host of last resort instead.
        if !apps.iter().any(|a| a.failing) {
            apps[0].failing = true;
        }
    } else {
        apps[0].failing = true;
        apps[0].stale = true;
    }
    for app in &mut apps {
        let s = app.tier().snapshot_age;
        app.taken_at = if app.stale {
            AS_OF - s - rng.gen_range(DAY..=5 * DAY)
        } else {
            AS_OF - rng.gen_range(30 * MINUTE..=(s / 2).min(36 * HOUR))
        };
    }

    // Identities: ~70% people, the rest non-human with a human owner.
    let n_ids = identities.max(1);
    let mut humans: Vec<u32> = Vec::new();
    let mut specs = Vec::with_capacity(n_ids as usize);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_apps as usize];
    for i in 0..n_ids {
        let roll: f64 = rng.gen();
        let kind = if i == 0 || roll < 0.70 {
            IdentityKind::Human
        } else if roll < 0.775 {
            IdentityKind::ServiceAccount
        } else if roll < 0.85 {
            IdentityKind::ApiKey
        } else if roll < 0.925 {
            IdentityKind::Bot
        } else {
            IdentityKind::Workload
        };
        let owner = if kind == IdentityKind::Human {
            humans.push(i);
            i
        } else {
            humans[rng.gen_range(0..humans.len())]
        };
        let s: f64 = rng.gen();
        let status = if i == 0 || s < 0.92 {
            IdentityStatus::Active
        } else if s < 0.96 {
            IdentityStatus::Disabled
        } else {
            IdentityStatus::Terminated
        };
        let want = if kind == IdentityKind::Human {
            rng.gen_range(1..=5)
        } else {
            rng.gen_range(1..=2)
        }
        .min(n_apps);
        let mut mine: Vec<u32> = Vec::with_capacity(want as usize);
        while (mine.len() as u32) < want {
            let a = rng.gen_range(0..n_apps);
            if !mine.contains(&a) {
                mine.push(a);
            }
        }
        let alt_app = (i % 9 == 4).then(|| mine[0]);
        for a in mine {
            members[a as usize].push(i);
        }
        specs.push(IdentitySpec {
            kind,
            status,
            owner,
            alt_app,
        });
    }

    // Per-subject plants go round-robin over the applications that can host
    // them: not silent (their events must all be old) and not stale (a
    // snapshot from weeks ago predates every logged change).
    let mut hosts: Vec<usize> = (0..apps.len())
        .filter(|&a| !apps[a].silent && !apps[a].stale)
        .collect();
    if hosts.is_empty() {
        hosts = (0..apps.len()).filter(|&a| !apps[a].silent).collect();
    }
    hosts.shuffle(rng);
    let per_kind = plants_per_kind(n_ids);
    let mut next = 0usize;
    for plant in Plant::ALL {
        for _ in 0..per_kind {
            if let Some(&a) = hosts.get(next % hosts.len().max(1)) {
                apps[a].plants.push(plant);
            }
            next += 1;
        }
    }
    World {
        identities: specs,
        apps,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Span;

    #[test]
    fn tiers_match_the_shipped_tiers_yaml() {
        #[derive(serde::Deserialize)]
        struct File {
            tiers: std::collections::BTreeMap<String, crate::ingest::model::TierTargets>,
        }
        let text = include_str!("../../policies/tiers.yaml");
        let file: File = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(file.tiers.len(), TIERS.len());
        let secs = |s: &Span| s.as_millis() / 1000;
        for t in TIERS {
            let y = &file.tiers[t.name];
            assert_eq!(secs(&y.max_sync_latency), t.latency, "{}", t.name);
            assert_eq!(secs(&y.revocation_window), t.revocation, "{}", t.name);
            assert_eq!(secs(&y.max_grant_age), t.grant_age, "{}", t.name);
            assert_eq!(secs(&y.heartbeat_window), t.heartbeat, "{}", t.name);
            assert_eq!(secs(&y.max_snapshot_age), t.snapshot_age, "{}", t.name);
        }
    }

    #[test]
    fn alt_names_never_collide_with_ids() {
        for i in 0..500 {
            for k in [
                IdentityKind::Human,
                IdentityKind::ServiceAccount,
                IdentityKind::Bot,
            ] {
                let alt = alt_account_name(i, &k);
                assert!(!alt.contains('.') && !alt.contains('-'), "{alt}");
            }
        }
    }
}
