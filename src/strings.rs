//! Strings stored one after another in one buffer, found by index: a
//! string per record costs a heap allocation and its header, millions of
//! times over. Used for the JUnit subject list and the string tables of the
//! packed desired assignments. And `ranked`: items numbered in the order
//! they were met, renumbered in sorted order.

use rayon::prelude::*;

/// Strings one after another in one buffer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StrList {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<usize>,
}

impl std::fmt::Debug for StrList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl StrList {
    /// How many strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The string at `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let id = &self.text[start..end];
            start = end;
            id
        })
    }

    /// Appends `s`; returns its index.
    pub fn push(&mut self, s: &str) -> usize {
        self.push_with(|t| t.push_str(s));
        self.ends.len() - 1
    }

    /// Appends the string `write` writes (straight into the buffer).
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    /// Whether the strings are in order.
    pub fn is_sorted(&self) -> bool {
        let mut ids = self.iter();
        let Some(mut last) = ids.next() else {
            return true;
        };
        for id in ids {
            if id < last {
                return false;
            }
            last = id;
        }
        true
    }

    /// The same strings, sorted (equal strings cannot be told apart, so the
    /// order among them does not matter).
    pub fn into_sorted(self) -> StrList {
        if self.is_sorted() {
            return self;
        }
        let mut ids: Vec<&str> = self.iter().collect();
        ids.par_sort_unstable();
        let mut out = StrList {
            text: String::with_capacity(self.text.len()),
            ends: Vec::with_capacity(self.ends.len()),
        };
        for id in ids {
            out.push(id);
        }
        out
    }

    /// An empty list with room for `strings` strings of `bytes` bytes in all.
    pub fn with_capacity(strings: usize, bytes: usize) -> StrList {
        StrList {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    /// How many bytes the strings take together.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Frees the room grown into but not used.
    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }
}

/// Items numbered in the order they were met, as `(number, item)`: the
/// items sorted by `order`, and each old number's rank in that order
/// (`rank[number]`), so that records holding numbers can be renumbered to
/// sort as their items do. Numbers must be `0..items.len()`, each once.
pub(crate) fn ranked<T>(
    mut items: Vec<(u32, T)>,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (Vec<T>, Vec<u32>) {
    items.sort_unstable_by(|(_, a), (_, b)| order(a, b));
    let mut rank = vec![0u32; items.len()];
    let sorted = items
        .into_iter()
        .enumerate()
        .map(|(r, (n, item))| {
            rank[n as usize] = r as u32;
            item
        })
        .collect();
    (sorted, rank)
}

/// Items numbered by their position: the items sorted by `order`, and each
/// position's rank in that order (`rank[position]`), as [`ranked`] gives
/// for `(position, item)` pairs. The sort moves 4-byte positions, not the
/// items; each item is then moved once, into its place. `order` must be a
/// total order on the items (no two equal) for the result not to depend on
/// the input's order.
pub(crate) fn sorted_ranked<T>(
    mut items: Vec<T>,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (Vec<T>, Vec<u32>) {
    let mut by_rank: Vec<u32> = (0..items.len() as u32).collect();
    by_rank.sort_unstable_by(|&a, &b| order(&items[a as usize], &items[b as usize]));
    let mut rank = vec![0u32; items.len()];
    for (r, &n) in by_rank.iter().enumerate() {
        rank[n as usize] = r as u32;
    }
    // The permutation applied in place, cycle by cycle: `to[i]` is where
    // the item now at `i` belongs, and each swap puts one item there.
    let mut to = rank.clone();
    for i in 0..items.len() {
        while to[i] as usize != i {
            let r = to[i] as usize;
            items.swap(i, r);
            to.swap(i, r);
        }
    }
    (items, rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn sorted_ranked_agrees_with_ranked() {
        let (sorted, rank) = sorted_ranked(vec!["c", "a", "b"], |a, b| a.cmp(b));
        assert_eq!(sorted, ["a", "b", "c"]);
        assert_eq!(rank, [2, 0, 1]);
        let (none, no_ranks) = sorted_ranked(Vec::<&str>::new(), |a, b| a.cmp(b));
        assert!(none.is_empty() && no_ranks.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn sorted_ranked_is_ranked_on_positions(
            items in proptest::collection::btree_set(0u32..1000, 0..200)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                .prop_shuffle()
        ) {
            let pairs = items.iter().enumerate().map(|(i, x)| (i as u32, *x)).collect();
            proptest::prop_assert_eq!(sorted_ranked(items, Ord::cmp), ranked(pairs, Ord::cmp));
        }
    }

    #[test]
    fn ranked_sorts_and_maps_each_number_to_its_rank() {
        let (sorted, rank) = ranked(vec![(0, "c"), (1, "a"), (2, "b")], |a, b| a.cmp(b));
        assert_eq!(sorted, ["a", "b", "c"]);
        assert_eq!(rank, [2, 0, 1]);
        let (none, no_ranks) = ranked(Vec::<(u32, &str)>::new(), |a, b| a.cmp(b));
        assert!(none.is_empty() && no_ranks.is_empty());
    }

    #[test]
    fn strings_come_back_as_pushed() {
        let mut l = StrList::default();
        assert_eq!(l.push("b"), 0);
        assert_eq!(l.push(""), 1);
        l.push_with(|s| s.push_str("a/é"));
        assert_eq!(l.iter().collect::<Vec<_>>(), ["b", "", "a/é"]);
        assert_eq!(
            (l.get(0), l.get(1), l.get(2), l.get(3)),
            (Some("b"), Some(""), Some("a/é"), None)
        );
        assert_eq!(format!("{l:?}"), r#"["b", "", "a/é"]"#);
        let mut joined = StrList::with_capacity(4, 8);
        joined.push("z");
        for s in l.iter() {
            joined.push(s);
        }
        assert_eq!(joined.iter().collect::<Vec<_>>(), ["z", "b", "", "a/é"]);
        assert!(!joined.is_sorted());
        assert_eq!(
            joined.into_sorted().iter().collect::<Vec<_>>(),
            ["", "a/é", "b", "z"]
        );
    }
}
