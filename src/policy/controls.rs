//! The control catalog (`controls.yaml`): control ids and titles per
//! framework, with the NIST CSF 1.1 → 2.0 crosswalk.
//!
//! Two framework flags matter to findings: `non_human_only` (OWASP NHI Top 10:
//! a finding about a person must not claim it) and `crosswalk_only` (CSF 1.1:
//! shown beside its 2.0 successor, never claimed by a policy directly).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A framework in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// Short id, e.g. `nist-csf-2.0`.
    pub id: String,
    /// Full title.
    pub title: String,
    /// Where the ids and titles come from.
    #[serde(default)]
    pub source: Option<String>,
    /// Claimable only for findings about non-human identities.
    #[serde(default)]
    pub non_human_only: bool,
    /// Kept for the crosswalk; never claimed by a policy.
    #[serde(default)]
    pub crosswalk_only: bool,
}

/// A control in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The id as the framework writes it (`NHI1:2025`, `PR.AA-05`, `AC-2(3)`).
    pub id: String,
    /// The framework's id.
    pub framework: String,
    /// The official title or outcome text.
    pub title: String,
    /// A one-line paraphrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the text came from, when it is not the framework's own source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_note: Option<String>,
    /// CSF 1.1 ids that moved into this CSF 2.0 id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub csf_1_1: Vec<String>,
    /// Claimable only for findings about a person (personnel controls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub human_only: bool,
    /// For a crosswalk-only id: the ids that replace it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps_to: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    frameworks: Vec<Framework>,
    controls: Vec<Control>,
}

/// The validated catalog.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Catalog {
    /// Frameworks by id.
    pub frameworks: BTreeMap<String, Framework>,
    /// Controls by id.
    pub controls: BTreeMap<String, Control>,
}

impl Catalog {
    /// Parses and checks a catalog: unique ids, known frameworks, crosswalk
    /// targets that exist.
    pub fn parse(file: &str, text: &str) -> Result<Self, String> {
        let raw: RawCatalog =
            crate::ingest::parse_yaml_document(file, text).map_err(|e| e.to_string())?;
        let mut catalog = Catalog::default();
        for f in raw.frameworks {
            if catalog.frameworks.contains_key(&f.id) {
                return Err(format!("framework `{}` is defined twice", f.id));
            }
            catalog.frameworks.insert(f.id.clone(), f);
        }
        for (i, c) in raw.controls.into_iter().enumerate() {
            if !catalog.frameworks.contains_key(&c.framework) {
                return Err(format!(
                    "controls[{i}]: control `{}` names unknown framework `{}`",
                    c.id, c.framework
                ));
            }
            if catalog.controls.contains_key(&c.id) {
                return Err(format!(
                    "controls[{i}]: control `{}` is defined twice",
                    c.id
                ));
            }
            catalog.controls.insert(c.id.clone(), c);
        }
        for c in catalog.controls.values() {
            for target in c.maps_to.iter() {
                if !catalog.controls.contains_key(target) {
                    return Err(format!(
                        "control `{}` maps to `{target}`, which is not in the catalog",
                        c.id
                    ));
                }
            }
        }
        Ok(catalog)
    }

    /// A control by id.
    pub fn get(&self, id: &str) -> Option<&Control> {
        self.controls.get(id)
    }

    /// Whether the control's framework is kept only for the crosswalk.
    pub fn is_crosswalk_only(&self, c: &Control) -> bool {
        self.frameworks
            .get(&c.framework)
            .is_some_and(|f| f.crosswalk_only)
    }

    /// Whether the control may be claimed for a finding about this subject:
    /// OWASP NHI controls only for known non-human identities, personnel
    /// controls only for known people, everything else always.
    pub fn applies_to(&self, id: &str, subject: &crate::policy::findings::Subject) -> bool {
        let Some(c) = self.get(id) else {
            return false;
        };
        let non_human_only = self
            .frameworks
            .get(&c.framework)
            .is_some_and(|f| f.non_human_only);
        let human = subject.identity_kind.as_deref() == Some("human");
        (!non_human_only || subject.is_non_human()) && (!c.human_only || human)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_has_the_verified_ids() {
        let c = Catalog::parse(
            "controls.yaml",
            include_str!("../../policies/controls.yaml"),
        )
        .unwrap();
        assert_eq!(c.get("NHI1:2025").unwrap().title, "Improper Offboarding");
        assert_eq!(
            c.get("NHI3:2025").unwrap().title,
            "Vulnerable Third-Party NHI"
        );
        let subject = |kind: Option<&str>| crate::policy::findings::Subject {
            kind: crate::policy::findings::SubjectKind::Grant,
            id: "grant:a/b/c".into(),
            identity: kind.map(|_| "x".to_owned()),
            identity_kind: kind.map(str::to_owned),
            application: None,
            entitlement: None,
            account: None,
            connector: None,
            tier: "high".into(),
        };
        let person = subject(Some("human"));
        let bot = subject(Some("service_account"));
        let unknown = subject(None);
        assert!(!c.applies_to("NHI1:2025", &person));
        assert!(c.applies_to("NHI1:2025", &bot));
        assert!(!c.applies_to("NHI1:2025", &unknown));
        assert!(c.applies_to("PS-4", &person));
        assert!(!c.applies_to("PS-4", &bot));
        assert!(!c.applies_to("PS-4", &unknown));
        assert!(c.applies_to("PR.AA-05", &person) && c.applies_to("PR.AA-05", &bot));
        // CSF 1.1 PR.AC-4 moved to 2.0 PR.AA-05; it is never claimed directly.
        let old = c.get("PR.AC-4").unwrap();
        assert!(c.is_crosswalk_only(old));
        assert!(old.maps_to.contains(&"PR.AA-05".to_owned()));
        assert!(c
            .get("PR.AA-05")
            .unwrap()
            .csf_1_1
            .contains(&"PR.AC-4".to_owned()));
        // Common mistakes are not in the catalog.
        for wrong in ["NHI-03", "NHI3", "DE.CM-01 ", "CSF PR.AC-4"] {
            assert!(c.get(wrong).is_none(), "{wrong}");
        }
        assert_eq!(c.get("AC-2(3)").unwrap().title, "Disable Accounts");
        assert_eq!(c.get("PS-4").unwrap().title, "Personnel Termination");
    }
}
