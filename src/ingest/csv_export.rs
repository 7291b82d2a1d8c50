//! CSV entitlement exports from legacy applications.
//!
//! One row per (account, entitlement). The columns are named in
//! `collection.yaml`: `account` and `entitlement` are required; `group` (the
//! group through which the row's entitlement is held, empty for a direct
//! grant) and `active` (`true`/`false`) are optional. Each row points back at
//! its line and carries the SHA-256 of the row's bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::collection::CsvColumns;
use super::digest::Sha256Digest;
use super::error::{Problems, RecordError};
use super::model::{ObservedAccount, ObservedGroup, SourceRef};

/// Accounts and groups read from one CSV export.
#[derive(Debug, Default)]
pub(crate) struct CsvState {
    pub(crate) accounts: Vec<ObservedAccount>,
    pub(crate) groups: Vec<ObservedGroup>,
}

/// Reads one application's CSV files.
pub(crate) fn parse(
    files: &[(String, String)],
    columns: &CsvColumns,
) -> Result<CsvState, Vec<(String, Problems)>> {
    let mut failures = Vec::new();
    let mut accounts: BTreeMap<String, ObservedAccount> = BTreeMap::new();
    let mut groups: BTreeMap<String, ObservedGroup> = BTreeMap::new();
    for (file, text) in files {
        let mut problems = Problems::default();
        read_file(
            file,
            text,
            columns,
            &mut problems,
            &mut accounts,
            &mut groups,
        );
        if !problems.is_empty() {
            failures.push((file.clone(), problems));
        }
    }
    if !failures.is_empty() {
        return Err(failures);
    }
    let mut accounts: Vec<ObservedAccount> = accounts.into_values().collect();
    for a in &mut accounts {
        a.direct.sort();
        a.direct.dedup();
    }
    let mut groups: Vec<ObservedGroup> = groups.into_values().collect();
    for g in &mut groups {
        g.entitlements.sort();
        g.entitlements.dedup();
        g.member_accounts.sort();
        g.member_accounts.dedup();
    }
    Ok(CsvState { accounts, groups })
}

fn read_file(
    file: &str,
    text: &str,
    columns: &CsvColumns,
    problems: &mut Problems,
    accounts: &mut BTreeMap<String, ObservedAccount>,
    groups: &mut BTreeMap<String, ObservedGroup>,
) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            problems.push(RecordError::at_line(
                file,
                1,
                format!("cannot read the header row: {e}"),
            ));
            return;
        }
    };
    let find = |name: &str| headers.iter().position(|h| h == name);
    let mut missing = Vec::new();
    let account_col = find(&columns.account);
    let entitlement_col = find(&columns.entitlement);
    if account_col.is_none() {
        missing.push(columns.account.as_str());
    }
    if entitlement_col.is_none() {
        missing.push(columns.entitlement.as_str());
    }
    let group_col = columns.group.as_deref().map(|g| (g, find(g)));
    let active_col = columns.active.as_deref().map(|a| (a, find(a)));
    for (name, col) in group_col.iter().chain(active_col.iter()) {
        if col.is_none() {
            missing.push(name);
        }
    }
    let (Some(account_col), Some(entitlement_col)) = (account_col, entitlement_col) else {
        problems.push(
            RecordError::at_line(
                file,
                1,
                format!("missing column(s) `{}`", missing.join("`, `")),
            )
            .with_help("the column names are mapped under `snapshot.columns` in `collection.yaml`"),
        );
        return;
    };
    if !missing.is_empty() {
        problems.push(RecordError::at_line(
            file,
            1,
            format!("missing column(s) `{}`", missing.join("`, `")),
        ));
        return;
    }
    let group_col = group_col.and_then(|(_, c)| c);
    let active_col = active_col.and_then(|(_, c)| c);
    let file_ref: Arc<str> = Arc::from(file);
    let lines: Vec<&str> = text.lines().collect();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                problems.push(RecordError::at_line(
                    file,
                    line,
                    format!("malformed row: {e}"),
                ));
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let raw_line = lines
            .get(line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("");
        let account = record.get(account_col).unwrap_or("");
        let entitlement = record.get(entitlement_col).unwrap_or("");
        if account.is_empty() || entitlement.is_empty() {
            let which = if account.is_empty() {
                &columns.account
            } else {
                &columns.entitlement
            };
            problems.push(
                RecordError::at_line(file, line, format!("column `{which}` is empty"))
                    .with_snippet(raw_line, 0, raw_line.len()),
            );
            continue;
        }
        let active = match active_col.map(|c| record.get(c).unwrap_or("")) {
            None | Some("") => true,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "active" | "enabled" => true,
                "false" | "no" | "0" | "inactive" | "disabled" => false,
                _ => {
                    problems.push(
                        RecordError::at_line(file, line, format!("`{v}` is not a boolean"))
                            .with_snippet(raw_line, 0, raw_line.len()),
                    );
                    continue;
                }
            },
        };
        let source = SourceRef {
            file: file_ref.clone(),
            line,
            sha256: Sha256Digest::of(raw_line.as_bytes()),
        };
        let acct = accounts
            .entry(account.to_owned())
            .or_insert_with(|| ObservedAccount {
                name: account.to_owned(),
                target_id: account.to_owned(),
                active,
                direct: Vec::new(),
                source: source.clone(),
            });
        if acct.active != active {
            problems.push(
                RecordError::at_line(
                    file,
                    line,
                    format!("account `{account}` is both active and inactive"),
                )
                .with_snippet(raw_line, 0, raw_line.len()),
            );
            continue;
        }
        match group_col.map(|c| record.get(c).unwrap_or("")) {
            Some(group) if !group.is_empty() => {
                let g = groups
                    .entry(group.to_owned())
                    .or_insert_with(|| ObservedGroup {
                        target_id: group.to_owned(),
                        display_name: group.to_owned(),
                        entitlements: Vec::new(),
                        member_accounts: Vec::new(),
                        member_groups: Vec::new(),
                        source: source.clone(),
                    });
                g.entitlements.push(entitlement.to_owned());
                g.member_accounts.push(account.to_owned());
            }
            _ => acct.direct.push(entitlement.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> CsvColumns {
        CsvColumns {
            account: "user".into(),
            entitlement: "perm".into(),
            group: Some("via".into()),
            active: Some("enabled".into()),
        }
    }

    #[test]
    fn reads_direct_and_group_rows() {
        let text = "user,perm,via,enabled\nalice,payroll,,true\nbob,payroll,hr-team,true\ncarol,view,,false\n";
        let s = parse(&[("x.csv".into(), text.into())], &cols()).unwrap();
        assert_eq!(s.accounts.len(), 3);
        assert_eq!(s.accounts[0].direct, vec!["payroll"]);
        assert_eq!(s.accounts[0].source.line, 2);
        assert!(s.accounts[1].direct.is_empty());
        assert!(!s.accounts[2].active);
        assert_eq!(s.groups[0].member_accounts, vec!["bob"]);
        assert_eq!(s.groups[0].entitlements, vec!["payroll"]);
    }

    #[test]
    fn reports_every_bad_row() {
        let text = "user,perm,via,enabled\n,payroll,,true\nbob,payroll,,maybe\n";
        let f = parse(&[("x.csv".into(), text.into())], &cols()).unwrap_err();
        let e = f
            .into_iter()
            .next()
            .unwrap()
            .1
            .into_result("x.csv")
            .unwrap_err();
        let shown = format!("{:?}", miette::Report::new(e));
        assert!(shown.contains("x.csv:2"), "{shown}");
        assert!(shown.contains("x.csv:3"), "{shown}");
    }

    #[test]
    fn missing_columns_are_named() {
        let f = parse(&[("x.csv".into(), "login,perm\n".into())], &cols()).unwrap_err();
        let e = f
            .into_iter()
            .next()
            .unwrap()
            .1
            .into_result("x.csv")
            .unwrap_err();
        let shown = format!("{:?}", miette::Report::new(e));
        assert!(shown.contains("`user`"), "{shown}");
    }
}
