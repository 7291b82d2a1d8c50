//! The list of every subject evaluated, kept for JUnit (which lists passing
//! subjects too).
//!
//! A W10 `attest` evaluates 16.5 million subjects. Kept as a `(kind,
//! String)` each, the list cost a heap string per id, a 16.5-million-entry
//! sort of scattered strings at the end, and about 1.3 GiB. Here each kind's
//! ids are written one after another into one buffer ([`StrList`]); each
//! application's lists are sorted by the thread that evaluated it, and
//! [`EvaluatedSubjects::merge`] joins them: application runs of grants,
//! assignments and accounts do not overlap (their ids start with the
//! application), so ordering the runs by their first id and concatenating
//! them gives the sorted list, which is then checked; a kind whose runs do
//! overlap (changes are named by key) is sorted whole.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::findings::SubjectKind;
use crate::strings::StrList;

/// Every subject evaluated, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvaluatedSubjects {
    kinds: BTreeMap<SubjectKind, StrList>,
}

impl EvaluatedSubjects {
    /// Appends `id` to the list of `kind`.
    pub fn push(&mut self, kind: SubjectKind, id: &str) {
        self.list_mut(kind).push(id);
    }

    /// The list of `kind`, to append to.
    pub fn list_mut(&mut self, kind: SubjectKind) -> &mut StrList {
        self.kinds.entry(kind).or_default()
    }

    /// The ids of `kind` (sorted, if [`Self::is_sorted`]).
    pub fn of_kind(&self, kind: SubjectKind) -> Option<&StrList> {
        self.kinds.get(&kind).filter(|l| !l.is_empty())
    }

    /// How many ids, of all kinds.
    pub fn len(&self) -> usize {
        self.kinds.values().map(StrList::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.kinds.values().all(StrList::is_empty)
    }

    /// Every `(kind, id)`, by kind, each kind in list order.
    pub fn iter(&self) -> impl Iterator<Item = (SubjectKind, &str)> + '_ {
        self.kinds
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |id| (*k, id)))
    }

    /// Whether each kind's ids are sorted.
    pub fn is_sorted(&self) -> bool {
        self.kinds.values().all(StrList::is_sorted)
    }

    /// Sorts each kind's ids.
    pub fn sort(&mut self) {
        for list in self.kinds.values_mut() {
            *list = std::mem::take(list).into_sorted();
        }
    }

    /// Joins `parts`, each sorted, into one sorted list (see the module
    /// documentation). Each kind is joined on its own thread.
    pub fn merge(parts: Vec<EvaluatedSubjects>) -> EvaluatedSubjects {
        let mut runs: BTreeMap<SubjectKind, Vec<StrList>> = BTreeMap::new();
        for part in parts {
            for (kind, list) in part.kinds {
                if !list.is_empty() {
                    runs.entry(kind).or_default().push(list);
                }
            }
        }
        let kinds = runs
            .into_par_iter()
            .map(|(kind, mut lists)| {
                // Runs that do not overlap are then in order.
                lists.sort_by(|a, b| a.get(0).cmp(&b.get(0)));
                let mut joined = StrList::with_capacity(
                    lists.iter().map(StrList::len).sum(),
                    lists.iter().map(StrList::bytes).sum(),
                );
                for list in lists {
                    joined.append(&list);
                }
                (kind, joined.into_sorted())
            })
            .collect();
        EvaluatedSubjects { kinds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the ids and however they are split into parts, the
        /// merge holds the same ids as one sorted list of all of them:
        /// overlapping runs (`a` + `a-b` prefixes, equal ids, kinds split
        /// across parts) included.
        #[test]
        fn merging_sorted_parts_gives_the_sorted_whole(
            parts in prop::collection::vec(
                prop::collection::vec((0..3usize, "(a|a-b|a/b|b)/[a-c]{0,3}"), 0..20),
                0..6,
            )
        ) {
            let kinds = [SubjectKind::Change, SubjectKind::Grant, SubjectKind::Account];
            let mut whole: Vec<(SubjectKind, String)> = Vec::new();
            let mut sorted_parts = Vec::new();
            for part in &parts {
                let mut e = EvaluatedSubjects::default();
                for (k, id) in part {
                    e.push(kinds[*k], id);
                    whole.push((kinds[*k], id.clone()));
                }
                e.sort();
                prop_assert!(e.is_sorted());
                sorted_parts.push(e);
            }
            whole.sort();
            let merged = EvaluatedSubjects::merge(sorted_parts);
            prop_assert!(merged.is_sorted());
            let got: Vec<(SubjectKind, String)> =
                merged.iter().map(|(k, id)| (k, id.to_owned())).collect();
            prop_assert_eq!(got, whole);
        }
    }
}
