//! SCIM 2.0 snapshots: RFC 7644 ListResponse documents of RFC 7643 Users and
//! Groups.
//!
//! A User's `entitlements` and `roles` are what it holds directly. A Group's
//! `members` with `type: "Group"` are nested groups, and entitlements or roles
//! listed on a Group apply to all its transitive members. The read-only
//! `groups` attribute of a User is ignored: membership is taken from the
//! Groups themselves, so it is counted once. Each resource points back at the
//! line where it starts and carries the SHA-256 of its exact bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::digest::Sha256Digest;
use super::error::{Problems, RecordError};
use super::model::{ObservedAccount, ObservedGroup, SourceRef};

const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[derive(Deserialize)]
struct RawListResponse<'a> {
    schemas: Vec<String>,
    #[serde(rename = "totalResults")]
    total_results: u64,
    #[serde(rename = "Resources", default, borrow)]
    resources: Option<Vec<&'a RawValue>>,
    #[serde(rename = "startIndex", default)]
    start_index: Option<u64>,
    #[serde(rename = "itemsPerPage", default)]
    items_per_page: Option<u64>,
}

#[derive(Deserialize)]
struct RawResource {
    schemas: Vec<String>,
    id: String,
    #[serde(rename = "externalId", default)]
    external_id: Option<String>,
    #[serde(rename = "userName", default)]
    user_name: Option<String>,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    entitlements: Vec<RawMultiValue>,
    #[serde(default)]
    roles: Vec<RawMultiValue>,
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
struct RawMultiValue {
    value: String,
}

#[derive(Deserialize)]
struct RawMember {
    value: String,
    #[serde(rename = "type", default)]
    ty: Option<String>,
}

/// Accounts and groups read from one application's SCIM files.
#[derive(Debug, Default)]
pub(crate) struct ScimState {
    pub(crate) accounts: Vec<ObservedAccount>,
    pub(crate) groups: Vec<ObservedGroup>,
}

struct PendingGroup {
    group: ObservedGroup,
    members: Vec<(usize, RawMember)>,
    at: String,
    file: String,
}

/// Reads the SCIM documents `files` (pairs of collection-relative name and
/// text) of one application.
pub(crate) fn parse(files: &[(String, String)]) -> Result<ScimState, Vec<(String, Problems)>> {
    let mut failures = Vec::new();
    let mut accounts: BTreeMap<String, ObservedAccount> = BTreeMap::new();
    let mut groups: Vec<PendingGroup> = Vec::new();
    for (file, text) in files {
        let mut problems = Problems::default();
        read_file(file, text, &mut problems, &mut accounts, &mut groups);
        if !problems.is_empty() {
            failures.push((file.clone(), problems));
        }
    }
    // Members are resolved once every file is read: a group may name users
    // or groups from another page.
    let group_ids: BTreeSet<String> = groups.iter().map(|g| g.group.target_id.clone()).collect();
    let mut seen_groups = BTreeSet::new();
    let mut out_groups = Vec::new();
    for mut pending in groups {
        let mut problems = Problems::default();
        if !seen_groups.insert(pending.group.target_id.clone())
            || accounts.contains_key(&pending.group.target_id)
        {
            problems.push(RecordError::at_path(
                &pending.file,
                format!("{}.id", pending.at),
                format!("resource id `{}` is used twice", pending.group.target_id),
            ));
        }
        for (j, m) in std::mem::take(&mut pending.members) {
            let at = format!("{}.members[{j}]", pending.at);
            let is_group = match m.ty.as_deref() {
                Some("Group") => true,
                Some("User") => false,
                Some(other) => {
                    problems.push(RecordError::at_path(
                        &pending.file,
                        format!("{at}.type"),
                        format!("unknown member type `{other}` (expected `User` or `Group`)"),
                    ));
                    continue;
                }
                None => group_ids.contains(&m.value),
            };
            let known = if is_group {
                group_ids.contains(&m.value)
            } else {
                accounts.contains_key(&m.value)
            };
            if !known {
                problems.push(RecordError::at_path(
                    &pending.file,
                    format!("{at}.value"),
                    format!(
                        "member `{}` is not a {} in this snapshot",
                        m.value,
                        if is_group { "Group" } else { "User" }
                    ),
                ));
                continue;
            }
            if is_group {
                pending.group.member_groups.push(m.value);
            } else {
                pending.group.member_accounts.push(m.value);
            }
        }
        pending.group.member_groups.sort();
        pending.group.member_groups.dedup();
        pending.group.member_accounts.sort();
        pending.group.member_accounts.dedup();
        if !problems.is_empty() {
            failures.push((pending.file.clone(), problems));
        }
        out_groups.push(pending.group);
    }
    if !failures.is_empty() {
        return Err(failures);
    }
    out_groups.sort();
    Ok(ScimState {
        accounts: accounts.into_values().collect(),
        groups: out_groups,
    })
}

fn read_file(
    file: &str,
    text: &str,
    problems: &mut Problems,
    accounts: &mut BTreeMap<String, ObservedAccount>,
    groups: &mut Vec<PendingGroup>,
) {
    let list: RawListResponse = match super::document::parse_json(file, text) {
        Ok(l) => l,
        Err(e) => {
            problems.push(e);
            return;
        }
    };
    if !list.schemas.iter().any(|s| s == LIST_RESPONSE) {
        problems.push(RecordError::at_path(
            file,
            "schemas",
            format!("not a SCIM ListResponse (`schemas` lacks `{LIST_RESPONSE}`)"),
        ));
        return;
    }
    let resources = list.resources.unwrap_or_default();
    let paginated = list.start_index.is_some() || list.items_per_page.is_some();
    if !paginated && list.total_results != resources.len() as u64 {
        problems.push(
            RecordError::at_path(
                file,
                "totalResults",
                format!(
                    "`totalResults` is {} but `Resources` holds {}, and no pagination is declared",
                    list.total_results,
                    resources.len()
                ),
            )
            .with_help("a partial export must say so with `startIndex` and `itemsPerPage` (RFC 7644 §3.4.2)"),
        );
    }
    let file_ref: Arc<str> = Arc::from(file);
    // Resources appear in file order: count newlines incrementally.
    let (mut counted_to, mut line_before) = (0usize, 1u64);
    for (i, raw) in resources.into_iter().enumerate() {
        let at = format_args!("Resources[{i}]");
        let bytes = raw.get();
        let offset = (bytes.as_ptr() as usize)
            .saturating_sub(text.as_ptr() as usize)
            .min(text.len());
        if offset >= counted_to {
            line_before += text.as_bytes()[counted_to..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            counted_to = offset;
        }
        let line = line_before;
        let source = SourceRef {
            file: file_ref.clone(),
            line,
            sha256: Sha256Digest::of(bytes.as_bytes()),
        };
        // Fast path: a valid resource is parsed once, without tracking the
        // path; only a failure is parsed again to say where it failed.
        let parsed = serde_json::from_str::<RawResource>(bytes).or_else(|_| {
            let mut de = serde_json::Deserializer::from_str(bytes);
            serde_path_to_error::deserialize::<_, RawResource>(&mut de)
        });
        let res: RawResource = match parsed {
            Ok(r) => r,
            Err(e) => {
                problems.push(RecordError::at_path(
                    file,
                    format!("{at}.{}", e.path()),
                    format!(
                        "{} (resource starts at line {line})",
                        super::document::strip_location(&e.into_inner().to_string())
                    ),
                ));
                continue;
            }
        };
        let direct: Vec<String> = {
            let mut v: Vec<String> = res
                .entitlements
                .iter()
                .chain(res.roles.iter())
                .map(|m| m.value.clone())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if res.schemas.iter().any(|s| s == USER) {
            let Some(user_name) = res.user_name.filter(|u| !u.is_empty()) else {
                problems.push(RecordError::at_path(
                    file,
                    format!("{at}.userName"),
                    format!("User `{}` has no `userName` (required by RFC 7643)", res.id),
                ));
                continue;
            };
            if accounts.contains_key(&res.id) {
                problems.push(RecordError::at_path(
                    file,
                    format!("{at}.id"),
                    format!("resource id `{}` is used twice", res.id),
                ));
                continue;
            }
            accounts.insert(
                res.id.clone(),
                ObservedAccount {
                    name: res
                        .external_id
                        .filter(|e| !e.is_empty())
                        .unwrap_or(user_name),
                    target_id: res.id,
                    active: res.active.unwrap_or(true),
                    direct,
                    source,
                },
            );
        } else if res.schemas.iter().any(|s| s == GROUP) {
            let Some(display_name) = res.display_name.filter(|d| !d.is_empty()) else {
                problems.push(RecordError::at_path(
                    file,
                    format!("{at}.displayName"),
                    format!(
                        "Group `{}` has no `displayName` (required by RFC 7643)",
                        res.id
                    ),
                ));
                continue;
            };
            groups.push(PendingGroup {
                group: ObservedGroup {
                    target_id: res.id,
                    display_name,
                    entitlements: direct,
                    member_accounts: Vec::new(),
                    member_groups: Vec::new(),
                    source,
                },
                members: res.members.into_iter().enumerate().collect(),
                at: at.to_string(),
                file: file.to_owned(),
            });
        } else {
            problems.push(RecordError::at_path(
                file,
                format!("{at}.schemas"),
                "resource is neither a SCIM User nor a Group",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(resources: &str, total: usize) -> String {
        format!(
            r#"{{"schemas": ["{LIST_RESPONSE}"], "totalResults": {total},
"Resources": [
{resources}
]}}"#
        )
    }

    #[test]
    fn reads_users_groups_and_nesting() {
        let text = doc(
            &[
                format!(r#"{{"schemas":["{USER}"],"id":"u1","userName":"alice@x","externalId":"alice","entitlements":[{{"value":"read"}}],"roles":[{{"value":"admin"}}]}}"#),
                format!(r#"{{"schemas":["{USER}"],"id":"u2","userName":"local-bob","active":false}}"#),
                format!(r#"{{"schemas":["{GROUP}"],"id":"g1","displayName":"ops","members":[{{"value":"u1","type":"User"}},{{"value":"g2","type":"Group"}}],"entitlements":[{{"value":"deploy"}}]}}"#),
                format!(r#"{{"schemas":["{GROUP}"],"id":"g2","displayName":"sre","members":[{{"value":"g1","type":"Group"}}]}}"#),
            ]
            .join(",\n"),
            4,
        );
        let s = parse(&[("s.json".into(), text)]).unwrap();
        assert_eq!(s.accounts.len(), 2);
        assert_eq!(s.accounts[0].name, "alice");
        assert_eq!(s.accounts[0].direct, vec!["admin", "read"]);
        assert_eq!(s.accounts[0].source.line, 3);
        assert_eq!(s.accounts[1].name, "local-bob");
        assert!(!s.accounts[1].active);
        assert_eq!(s.groups[0].member_groups, vec!["g2"]);
        assert_eq!(s.groups[1].member_groups, vec!["g1"]);
        assert_eq!(s.groups[0].entitlements, vec!["deploy"]);
    }

    #[test]
    fn reports_unknown_members_and_missing_names() {
        let text = doc(
            &[
                format!(r#"{{"schemas":["{USER}"],"id":"u1"}}"#),
                format!(r#"{{"schemas":["{GROUP}"],"id":"g1","displayName":"ops","members":[{{"value":"ghost","type":"User"}}]}}"#),
            ]
            .join(",\n"),
            2,
        );
        let failures = parse(&[("s.json".into(), text)]).unwrap_err();
        let shown: Vec<String> = failures
            .into_iter()
            .flat_map(|(f, p)| {
                let e = p.into_result(&f).unwrap_err();
                vec![format!("{:?}", miette::Report::new(e))]
            })
            .collect();
        let all = shown.join("\n");
        assert!(all.contains("Resources[0].userName"), "{all}");
        assert!(all.contains("member `ghost`"), "{all}");
    }

    #[test]
    fn total_results_must_match_without_pagination() {
        let text = doc(
            &format!(r#"{{"schemas":["{USER}"],"id":"u1","userName":"a"}}"#),
            3,
        );
        assert!(parse(&[("s.json".into(), text)]).is_err());
    }
}
