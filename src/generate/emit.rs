//! Writing a generated collection to disk, in exactly the shapes of
//! `samples/` and `docs/formats.md`: the manifest, the desired state (YAML,
//! streamed identity by identity and application by application), SCIM
//! ListResponse documents, CSV exports and the sync-log files.
//!
//! Every writer is buffered; nothing here holds more than one application's
//! records at a time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::app::{timestamp, AppOutput, DAY_FILES, LEGACY_FILE};
use super::world::{
    alt_account_name, display_name, identity_id, World, AS_OF, DAY, LOG_START, MINUTE,
};
use super::GenerateError;

/// SCIM ListResponse schema URN.
const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// SCIM User schema URN.
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// SCIM Group schema URN.
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A buffered file that remembers its path for error messages.
pub(crate) struct Out {
    path: PathBuf,
    w: BufWriter<File>,
}

/// Buffered writing with path-bearing errors.
impl Out {
    /// Creates (truncates) `path`.
    pub(crate) fn create(path: PathBuf) -> Result<Out, GenerateError> {
        let file = File::create(&path).map_err(|source| GenerateError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Out {
            w: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }

    /// Writes `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), GenerateError> {
        self.w.write_all(bytes).map_err(|source| GenerateError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes and closes.
    pub(crate) fn finish(mut self) -> Result<(), GenerateError> {
        self.w.flush().map_err(|source| GenerateError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Creates a directory and its parents.
pub(crate) fn mkdir(path: &Path) -> Result<(), GenerateError> {
    std::fs::create_dir_all(path).map_err(|source| GenerateError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The collection-relative names of the sync-log files.
pub(crate) fn log_files(world: &World) -> Vec<String> {
    let first = LOG_START.div_euclid(DAY) * DAY;
    let mut files: Vec<String> = (0..DAY_FILES as i64)
        .map(|d| {
            let date = timestamp(first + d * DAY);
            format!("logs/sync-{}.jsonl", date.get(..10).unwrap_or_default())
        })
        .collect();
    if world.apps.iter().any(|a| a.csv) {
        files.push("logs/legacy-connectors.ndjson".to_owned());
    }
    files
}

/// The collection-relative snapshot files of application `a`.
pub(crate) fn snapshot_files(world: &World, a: usize) -> Vec<String> {
    let app = &world.apps[a];
    if app.csv {
        vec![format!("snapshots/{}/export.csv", app.id)]
    } else {
        vec![
            format!("snapshots/{}/users.json", app.id),
            format!("snapshots/{}/groups.json", app.id),
        ]
    }
}

/// Writes `collection.yaml`.
pub(crate) fn manifest(
    root: &Path,
    world: &World,
    seed: u64,
    events: u64,
) -> Result<(), GenerateError> {
    let mut o = Out::create(root.join("collection.yaml"))?;
    let mut s = String::new();
    s.push_str("# Synthetic collection written by `syncproof generate`; its ground truth\n");
    s.push_str("# is the `.truth.json` file beside this directory.\n");
    s.push_str("version: 1\n");
    s.push_str(&format!(
        "name: \"Synthetic workload (seed {seed}, {events} events)\"\n"
    ));
    s.push_str(&format!(
        "collected_at: {}\n\napplications:\n",
        timestamp(AS_OF)
    ));
    o.write(s.as_bytes())?;
    for (a, app) in world.apps.iter().enumerate() {
        let mut s = format!(
            "  - id: {}\n    name: {}\n    tier: {}\n    connector: {}\n    snapshot:\n      format: {}\n      files:\n",
            app.id,
            app.name,
            app.tier().name,
            app.connector,
            if app.csv { "csv" } else { "scim" }
        );
        for f in snapshot_files(world, a) {
            s.push_str(&format!("        - {f}\n"));
        }
        s.push_str(&format!("      taken_at: {}\n", timestamp(app.taken_at)));
        if app.csv {
            s.push_str("      columns:\n        account: LOGIN_ID\n        entitlement: PERMISSION\n        group: VIA_GROUP\n        active: ENABLED\n");
        }
        o.write(s.as_bytes())?;
    }
    let mut s = String::from("\nsync_logs:\n");
    for f in log_files(world) {
        s.push_str(&format!("  - {f}\n"));
    }
    s.push_str(&format!("\ndesired_state: {DESIRED_STATE}\n"));
    o.write(s.as_bytes())?;
    o.finish()
}

/// The desired state being written: JSON, as an identity governance system
/// exports it at this scale (YAML parses at a few tens of MB/s; a desired
/// state of a million identities is written as JSON by every IGA export).
pub(crate) struct DesiredOut {
    out: Out,
    first_assignment: bool,
}

impl DesiredOut {
    /// Closes the `assignments` array and the document.
    pub(crate) fn finish(mut self) -> Result<(), GenerateError> {
        self.out.write(b"\n  ]\n}\n")?;
        self.out.finish()
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Where the desired state is written.
pub(crate) const DESIRED_STATE: &str = "desired/governance.json";

/// Starts the desired state: the header and every identity, then the
/// `assignments` array that [`assignments`] appends to.
pub(crate) fn desired_start(root: &Path, world: &World) -> Result<DesiredOut, GenerateError> {
    let mut o = Out::create(root.join(DESIRED_STATE))?;
    let head = format!(
        "{{\n  \"exported_at\": \"{}\",\n  \"identities\": [\n",
        timestamp(AS_OF - 2 * MINUTE)
    );
    o.write(head.as_bytes())?;
    let mut s = String::with_capacity(1 << 16);
    for (i, spec) in world.identities.iter().enumerate() {
        let i = i as u32;
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&format!(
            "    {{\"id\": {}, \"display_name\": {}, \"kind\": {}",
            json_str(&identity_id(i, &spec.kind)),
            json_str(&display_name(i, &spec.kind)),
            json_str(spec.kind.as_str())
        ));
        if !spec.kind.is_human() {
            let owner = &world.identities[spec.owner as usize];
            s.push_str(&format!(
                ", \"owner\": {}",
                json_str(&identity_id(spec.owner, &owner.kind))
            ));
        }
        s.push_str(&format!(", \"status\": {}", json_str(spec.status.as_str())));
        if let Some(a) = spec.alt_app {
            s.push_str(&format!(
                ", \"accounts\": {{{}: {}}}",
                json_str(&world.apps[a as usize].id),
                json_str(&alt_account_name(i, &spec.kind))
            ));
        }
        s.push('}');
        if s.len() > 1 << 15 {
            o.write(s.as_bytes())?;
            s.clear();
        }
    }
    s.push_str("\n  ],\n  \"assignments\": [\n");
    o.write(s.as_bytes())?;
    Ok(DesiredOut {
        out: o,
        first_assignment: true,
    })
}

/// Appends one application's assignments to the desired state.
pub(crate) fn assignments(
    o: &mut DesiredOut,
    world: &World,
    a: usize,
    out: &AppOutput,
) -> Result<(), GenerateError> {
    let app = json_str(&world.apps[a].id);
    let mut s = String::new();
    for x in &out.assignments {
        let kind = &world.identities[x.identity as usize].kind;
        if !o.first_assignment {
            s.push_str(",\n");
        }
        o.first_assignment = false;
        s.push_str(&format!(
            "    {{\"identity\": {}, \"application\": {app}, \"entitlement\": {}, \"granted_at\": \"{}\"",
            json_str(&identity_id(x.identity, kind)),
            json_str(&x.entitlement),
            timestamp(x.granted_at)
        ));
        if let Some(e) = x.expires_at {
            s.push_str(&format!(", \"expires_at\": \"{}\"", timestamp(e)));
        }
        s.push_str(&format!(", \"approval\": {}}}", json_str(&x.approval)));
    }
    o.out.write(s.as_bytes())
}

/// An RFC 7644 ListResponse without pagination.
#[derive(Serialize)]
struct ListResponse<R: Serialize> {
    schemas: [&'static str; 1],
    #[serde(rename = "totalResults")]
    total_results: usize,
    #[serde(rename = "Resources")]
    resources: Vec<R>,
}

/// A SCIM multi-valued attribute entry.
#[derive(Serialize)]
struct Value<'a> {
    value: &'a str,
}

/// SCIM `meta` (ignored by syncproof, present in real exports).
#[derive(Serialize)]
struct Meta {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
}

/// A SCIM User.
#[derive(Serialize)]
struct UserResource<'a> {
    schemas: [&'static str; 1],
    id: &'a str,
    #[serde(rename = "externalId", skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    #[serde(rename = "userName")]
    user_name: &'a str,
    #[serde(rename = "displayName")]
    display_name: &'a str,
    active: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entitlements: Vec<Value<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Value<'a>>,
    meta: Meta,
}

/// A SCIM Group member.
#[derive(Serialize)]
struct Member<'a> {
    value: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
}

/// A SCIM Group.
#[derive(Serialize)]
struct GroupResource<'a> {
    schemas: [&'static str; 1],
    id: &'a str,
    #[serde(rename = "displayName")]
    display_name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<Member<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entitlements: Vec<Value<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Value<'a>>,
    meta: Meta,
}

/// Writes `doc` as pretty JSON with a final newline.
fn write_json<T: Serialize>(path: PathBuf, doc: &T) -> Result<(), GenerateError> {
    let mut o = Out::create(path)?;
    serde_json::to_writer_pretty(&mut o.w, doc).map_err(|e| GenerateError::Serialize {
        what: format!("`{}`", o.path.display()),
        message: e.to_string(),
    })?;
    o.write(b"\n")?;
    o.finish()
}

/// Writes application `a`'s snapshot files.
pub(crate) fn snapshot(
    root: &Path,
    world: &World,
    a: usize,
    out: &AppOutput,
) -> Result<(), GenerateError> {
    let app = &world.apps[a];
    let dir = root.join("snapshots").join(&app.id);
    mkdir(&dir)?;
    if app.csv {
        return csv_export(dir.join("export.csv"), out, app.taken_at);
    }
    // Some applications list direct access as `roles`, the rest as
    // `entitlements`; syncproof treats both alike.
    let as_roles = a % 3 == 1;
    /// Direct values as `entitlements` or as `roles`.
    fn split(as_roles: bool, values: Vec<Value<'_>>) -> (Vec<Value<'_>>, Vec<Value<'_>>) {
        if as_roles {
            (Vec::new(), values)
        } else {
            (values, Vec::new())
        }
    }
    let users: Vec<UserResource<'_>> = out
        .accounts
        .iter()
        .filter(|acct| acct.present)
        .map(|acct| {
            let (entitlements, roles) = split(
                as_roles,
                acct.direct.iter().map(|e| Value { value: e }).collect(),
            );
            UserResource {
                schemas: [USER],
                id: &acct.target_id,
                external_id: acct.external.then_some(acct.name.as_str()),
                user_name: &acct.user_name,
                display_name: &acct.display,
                active: acct.active,
                entitlements,
                roles,
                meta: Meta {
                    resource_type: "User",
                },
            }
        })
        .collect();
    write_json(
        dir.join("users.json"),
        &ListResponse {
            schemas: [LIST_RESPONSE],
            total_results: users.len(),
            resources: users,
        },
    )?;
    let groups: Vec<GroupResource<'_>> = out
        .groups
        .iter()
        .map(|g| {
            let mut members: Vec<Member<'_>> = g
                .accounts
                .iter()
                .map(|&m| Member {
                    value: &out.accounts[m].target_id,
                    ty: "User",
                })
                .collect();
            members.extend(g.groups.iter().map(|&m| Member {
                value: &out.groups[m].id,
                ty: "Group",
            }));
            let (entitlements, roles) = split(
                as_roles,
                g.entitlements.iter().map(|e| Value { value: e }).collect(),
            );
            GroupResource {
                schemas: [GROUP],
                id: &g.id,
                display_name: &g.name,
                members,
                entitlements,
                roles,
                meta: Meta {
                    resource_type: "Group",
                },
            }
        })
        .collect();
    write_json(
        dir.join("groups.json"),
        &ListResponse {
            schemas: [LIST_RESPONSE],
            total_results: groups.len(),
            resources: groups,
        },
    )?;
    Ok(())
}

/// Writes a legacy CSV export: one row per (account, entitlement), with the
/// group it is held through, extra columns syncproof ignores.
fn csv_export(path: PathBuf, out: &AppOutput, taken_at: i64) -> Result<(), GenerateError> {
    /// Values of an extra column syncproof ignores.
    const DEPARTMENTS: [&str; 5] = ["Finance", "Engineering", "People Ops", "Sales", "Support"];
    let o = Out::create(path)?;
    let err = |e: csv::Error| GenerateError::Serialize {
        what: "a CSV row".into(),
        message: e.to_string(),
    };
    let last_login = timestamp(taken_at - DAY);
    let last_login = last_login.get(..10).unwrap_or_default();
    let path = o.path.clone();
    let mut w = csv::Writer::from_writer(o.w);
    w.write_record([
        "LOGIN_ID",
        "DEPARTMENT",
        "PERMISSION",
        "VIA_GROUP",
        "ENABLED",
        "LAST_LOGIN",
    ])
    .map_err(err)?;
    let mut via: Vec<Vec<(&str, &str)>> = vec![Vec::new(); out.accounts.len()];
    for g in &out.groups {
        for &m in &g.accounts {
            for e in &g.entitlements {
                via[m].push((e, &g.name));
            }
        }
    }
    for (m, acct) in out.accounts.iter().enumerate() {
        if !acct.present {
            continue;
        }
        let dept = DEPARTMENTS[m % DEPARTMENTS.len()];
        let enabled = if acct.active { "true" } else { "false" };
        for e in &acct.direct {
            w.write_record([acct.name.as_str(), dept, e, "", enabled, last_login])
                .map_err(err)?;
        }
        for (e, g) in &via[m] {
            w.write_record([acct.name.as_str(), dept, e, g, enabled, last_login])
                .map_err(err)?;
        }
    }
    let mut inner = w.into_inner().map_err(|e| GenerateError::Serialize {
        what: "a CSV export".into(),
        message: e.to_string(),
    })?;
    inner
        .flush()
        .map_err(|source| GenerateError::Io { path, source })
}

/// The open sync-log files.
pub(crate) struct Logs {
    files: Vec<Out>,
}

/// Creating, appending to and closing the sync logs.
impl Logs {
    /// Creates every sync-log file (empty ones too: the manifest names them).
    pub(crate) fn create(root: &Path, world: &World) -> Result<Logs, GenerateError> {
        let files = log_files(world)
            .into_iter()
            .map(|f| Out::create(root.join(f)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Logs { files })
    }

    /// Appends one application's lines (already sorted per file).
    pub(crate) fn write(&mut self, out: &AppOutput) -> Result<(), GenerateError> {
        for line in &out.lines {
            let i = if line.file == LEGACY_FILE {
                self.files.len() - 1
            } else {
                line.file
            };
            if let Some(f) = self.files.get_mut(i) {
                f.write(line.text.as_bytes())?;
                f.write(b"\n")?;
            }
        }
        Ok(())
    }

    /// Flushes every file.
    pub(crate) fn finish(self) -> Result<(), GenerateError> {
        for f in self.files {
            f.finish()?;
        }
        Ok(())
    }
}
