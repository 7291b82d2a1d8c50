//! Slicing each action's policy set by the leading context guards of its
//! policies, and finding the entity attributes no policy reads.
//!
//! Cedar walks every policy of the set it is given on every request (about
//! 1.2 µs each), so a request should carry only the policies that can apply
//! to it. [`CompiledPack::by_action`](super::CompiledPack::by_action) already
//! leaves out the policies whose action scope cannot match. This module goes
//! one step further, on the policies' conditions:
//!
//! - A **guard** is a conjunct that tests one context field against a
//!   constant and can never raise an error: `context.f == "lit"` (either
//!   side), `context.f` and `!context.f`.
//! - A policy's **leading guards** are the longest prefix of guards in the
//!   left-to-right `&&` chain of its first condition clause, when that clause
//!   is a `when`. A policy whose first clause is an `unless`, or whose first
//!   conjunct is anything else, has no leading guards.
//! - Cedar evaluates the scope, then the first clause, and `&&`
//!   short-circuits left to right. If a request falsifies any leading guard,
//!   every guard before it evaluated without error, so the policy's condition
//!   is `false` with no error: the policy is not satisfied and reports
//!   nothing. Leaving it out of that request's set changes neither the
//!   decision, nor the determining policies, nor the errors.
//!
//! A request's **guard key** is computed from the values the request builder
//! supplied: for each guarded string field, which of the literals the
//! policies mention it equals (or none of them); for each guarded boolean
//! field, its value. The policy set of a key holds every policy none of whose
//! leading guards the key falsifies; it is built on first use and cached (the
//! set is a function of the key alone, so caching and thread scheduling
//! cannot change a decision). A request that lacks a guarded field, or
//! supplies it with another type, gets the action's full set: a guard is only
//! trusted when the value Cedar will read is the one the key was computed
//! from, of the type that makes the guard error-free.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use cedar_policy::{Policy, PolicySet};
use serde_json::Value;

/// The most keys (policy-set slices) one action may have. Fields are added
/// to the key, most-guarded first, while the product of their value counts
/// stays within this; guards on the fields left out are simply not used for
/// slicing (still exact: any falsified leading guard proves the condition
/// false).
pub const MAX_KEYS: usize = 4096;

/// A leading guard of a policy's condition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Guard {
    /// `context.field == "literal"` (or `"literal" == context.field`).
    Equals {
        /// The context field.
        field: String,
        /// The string it must equal.
        literal: String,
    },
    /// `context.field` (`value` true) or `!context.field` (`value` false).
    Is {
        /// The context field (a Bool).
        field: String,
        /// The value it must have.
        value: bool,
    },
}

impl Guard {
    /// The context field the guard tests.
    pub fn field(&self) -> &str {
        match self {
            Guard::Equals { field, .. } | Guard::Is { field, .. } => field,
        }
    }
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Guard::Equals { field, literal } => write!(f, "context.{field} == {literal:?}"),
            Guard::Is { field, value: true } => write!(f, "context.{field}"),
            Guard::Is {
                field,
                value: false,
            } => write!(f, "!context.{field}"),
        }
    }
}

/// The only entry of a one-entry JSON object.
fn single(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// `context.<attr>`: the attribute name.
fn context_attr(v: &Value) -> Option<&str> {
    let (op, inner) = single(v)?;
    if op != "." {
        return None;
    }
    let left = inner.get("left")?;
    let (var, name) = single(left)?;
    if var != "Var" || name.as_str() != Some("context") {
        return None;
    }
    inner.get("attr")?.as_str()
}

/// A string literal.
fn string_literal(v: &Value) -> Option<&str> {
    let (op, value) = single(v)?;
    if op != "Value" {
        return None;
    }
    value.as_str()
}

/// The guard a conjunct is, if it is one.
fn guard(v: &Value) -> Option<Guard> {
    if let Some(field) = context_attr(v) {
        return Some(Guard::Is {
            field: field.to_owned(),
            value: true,
        });
    }
    let (op, inner) = single(v)?;
    match op {
        "!" => context_attr(inner.get("arg")?).map(|field| Guard::Is {
            field: field.to_owned(),
            value: false,
        }),
        "==" => {
            let (l, r) = (inner.get("left")?, inner.get("right")?);
            let (field, literal) = match (context_attr(l), string_literal(r)) {
                (Some(f), Some(s)) => (f, s),
                _ => (context_attr(r)?, string_literal(l)?),
            };
            Some(Guard::Equals {
                field: field.to_owned(),
                literal: literal.to_owned(),
            })
        }
        _ => None,
    }
}

/// The conjuncts of an `&&` chain, left to right.
fn conjuncts<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    if let Some(("&&", inner)) = single(v) {
        if let (Some(l), Some(r)) = (inner.get("left"), inner.get("right")) {
            conjuncts(l, out);
            conjuncts(r, out);
            return;
        }
    }
    out.push(v);
}

/// The leading guards of a policy, from its EST (`Policy::to_json`): the
/// longest prefix of guards in the `&&` chain of its first condition clause
/// when that clause is a `when`; none otherwise.
pub fn leading_guards(est: &Value) -> Vec<Guard> {
    let Some(first) = est
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Vec::new();
    };
    if first.get("kind").and_then(Value::as_str) != Some("when") {
        return Vec::new();
    }
    let Some(body) = first.get("body") else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    conjuncts(body, &mut parts);
    parts.into_iter().map_while(guard).collect()
}

/// Whether an EST attribute access (the operand of `.` or `has`) is on
/// `context` itself.
pub(super) fn reads_context(access: &Value) -> bool {
    access
        .get("left")
        .and_then(|l| l.get("Var"))
        .and_then(Value::as_str)
        == Some("context")
}

/// Collects the attribute names an EST reads with `.` or `has` on anything
/// but `context` itself (the only ways Cedar can observe an entity's
/// attributes: equality and `in` use the uid and the parents). Sets
/// `unknown` when an access does not name its attribute, or the EST embeds
/// an expression as a string (`__expr`), so the caller keeps every
/// attribute. Over-counting is harmless: the names only decide what to keep.
pub fn entity_attr_reads(v: &Value, names: &mut BTreeSet<String>, unknown: &mut bool) {
    match v {
        Value::Object(map) => {
            for op in [".", "has"] {
                if let Some(inner) = map.get(op) {
                    let on_context = reads_context(inner);
                    match inner.get("attr").and_then(Value::as_str) {
                        Some(_) if on_context => {}
                        Some(a) => {
                            names.insert(a.to_owned());
                        }
                        None => *unknown = true,
                    }
                }
            }
            if map.contains_key("__expr") {
                *unknown = true;
            }
            for child in map.values() {
                entity_attr_reads(child, names, unknown);
            }
        }
        Value::Array(items) => {
            for child in items {
                entity_attr_reads(child, names, unknown);
            }
        }
        _ => {}
    }
}

/// What a policy needs from the entity store, from its EST.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreReads {
    /// It may read an entity's attributes, tags or ancestors: `.` or `has`
    /// on anything but `context` itself, `in` (in a condition, or a
    /// `principal`/`resource` scope), `getTag`/`hasTag`, or an expression
    /// embedded as a string (`__expr`, which cannot be analysed). Without
    /// any of these (equality and `is` use only the uid) the policy's
    /// outcome cannot depend on what the store holds.
    pub reads: bool,
    /// Its conditions name an entity literal, which could reach an entity
    /// that no request of the partition names; then no entity may be left
    /// out of any store.
    pub literal: bool,
}

/// What the policy whose EST is `est` needs from the entity store.
pub fn store_reads(est: &Value) -> StoreReads {
    let mut out = StoreReads::default();
    for scope in ["principal", "resource"] {
        if let Some(s) = est.get(scope) {
            if s.get("op").and_then(Value::as_str) == Some("in") || s.get("in").is_some() {
                out.reads = true;
            }
        }
    }
    if let Some(conditions) = est.get("conditions") {
        condition_store_reads(conditions, &mut out);
    }
    out
}

fn condition_store_reads(v: &Value, out: &mut StoreReads) {
    match v {
        Value::Object(map) => {
            for op in [".", "has"] {
                if let Some(inner) = map.get(op) {
                    let on_context = reads_context(inner);
                    if !on_context {
                        out.reads = true;
                    }
                }
            }
            for op in ["in", "getTag", "hasTag", "__expr"] {
                if map.contains_key(op) {
                    out.reads = true;
                }
            }
            if map.contains_key("__entity") {
                out.literal = true;
            }
            for child in map.values() {
                condition_store_reads(child, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                condition_store_reads(child, out);
            }
        }
        _ => {}
    }
}

/// A context value as the request builder supplied it, for the guard key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardValue<'a> {
    /// A string.
    Str(&'a str),
    /// A boolean.
    Bool(bool),
    /// Any other value (never satisfies nor falsifies a guard).
    Other,
}

/// One field of the key.
#[derive(Clone, Debug)]
enum Field {
    /// A string field and the literals guards compare it with, sorted.
    Str(String, Vec<String>),
    /// A boolean field.
    Bool(String),
}

impl Field {
    fn name(&self) -> &str {
        match self {
            Field::Str(n, _) | Field::Bool(n) => n,
        }
    }

    /// How many codes: one per literal plus "none of them"; or two.
    fn radix(&self) -> usize {
        match self {
            Field::Str(_, lits) => lits.len() + 1,
            Field::Bool(_) => 2,
        }
    }

    /// The code of a supplied value; `None` when the type does not match.
    fn code(&self, v: GuardValue<'_>) -> Option<usize> {
        match (self, v) {
            (Field::Str(_, lits), GuardValue::Str(s)) => {
                Some(lits.iter().position(|l| l == s).unwrap_or(lits.len()))
            }
            (Field::Bool(_), GuardValue::Bool(b)) => Some(usize::from(b)),
            _ => None,
        }
    }

    /// The code a guard on this field requires.
    fn required(&self, g: &Guard) -> Option<usize> {
        match (self, g) {
            (Field::Str(_, lits), Guard::Equals { literal, .. }) => {
                lits.iter().position(|l| l == literal)
            }
            (Field::Bool(_), Guard::Is { value, .. }) => Some(usize::from(*value)),
            _ => None,
        }
    }
}

/// The context fields a policy reads (`None`: it uses `context` whole).
pub type Reads = Option<BTreeSet<String>>;

/// A policy of an action, the (field, code) pairs its leading guards
/// require, and the context fields it reads.
type Member = (Policy, Vec<(usize, usize)>, Reads);

/// The policies one request is decided against, and the context fields they
/// read: a field no policy of the set reads cannot change the decision, so
/// the request leaves it out (building a Cedar context costs per field).
pub struct Slice {
    /// The policies.
    pub policies: PolicySet,
    /// The context fields they read (`None`: every field).
    pub context_fields: Reads,
}

impl Slice {
    fn new<'p>(members: impl Iterator<Item = &'p Member>) -> Self {
        let mut policies = PolicySet::new();
        let mut fields = Some(BTreeSet::new());
        for (policy, _, reads) in members {
            // Ids are unique in the pack, so they are here too.
            let _ = policies.add(policy.clone());
            match (reads, fields.as_mut()) {
                (Some(r), Some(f)) => f.extend(r.iter().cloned()),
                _ => fields = None,
            }
        }
        Slice {
            policies,
            context_fields: fields,
        }
    }
}

/// One action's policies, sliced by their leading guards.
pub struct Slices {
    /// The key's fields, with their strides.
    fields: Vec<(Field, usize)>,
    /// Every policy of the action, in order, with the (field, code) pairs
    /// its leading guards require and the context fields it reads.
    members: Vec<Member>,
    /// Every policy of the action.
    full: Slice,
    /// The slice of each key, built on first use.
    sets: Vec<OnceLock<Slice>>,
}

impl Slices {
    /// Slices `policies` (every policy whose scope can apply to the action,
    /// in a fixed order, with its leading guards and the context fields it
    /// reads).
    pub fn new(policies: Vec<(Policy, Vec<Guard>, Reads)>) -> Self {
        // Every guarded field: its type, its literals, how many policies
        // guard on it. A field guarded as both a string and a boolean (not
        // valid against any schema) is not used.
        let mut seen: BTreeMap<&str, (Option<BTreeSet<&str>>, bool, usize)> = BTreeMap::new();
        for (_, guards, _) in &policies {
            let mut counted: BTreeSet<&str> = BTreeSet::new();
            for g in guards {
                let e = seen.entry(g.field()).or_insert((None, false, 0));
                match g {
                    Guard::Equals { literal, .. } => {
                        e.0.get_or_insert_with(BTreeSet::new).insert(literal);
                    }
                    Guard::Is { .. } => e.1 = true,
                }
                if counted.insert(g.field()) {
                    e.2 += 1;
                }
            }
        }
        let mut candidates: Vec<(usize, Field)> = seen
            .into_iter()
            .filter_map(|(name, (lits, is_bool, count))| match (lits, is_bool) {
                (Some(lits), false) => Some((
                    count,
                    Field::Str(
                        name.to_owned(),
                        lits.into_iter().map(str::to_owned).collect(),
                    ),
                )),
                (None, true) => Some((count, Field::Bool(name.to_owned()))),
                _ => None,
            })
            .collect();
        // Most-guarded first, then by name (the sort is stable).
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut fields: Vec<(Field, usize)> = Vec::new();
        let mut keys = 1usize;
        for (_, field) in candidates {
            let Some(next) = keys.checked_mul(field.radix()) else {
                continue;
            };
            if next > MAX_KEYS {
                continue;
            }
            fields.push((field, keys));
            keys = next;
        }
        let members: Vec<_> = policies
            .into_iter()
            .map(|(policy, guards, reads)| {
                let needs = guards
                    .iter()
                    .filter_map(|g| {
                        let i = fields.iter().position(|(f, _)| f.name() == g.field())?;
                        Some((i, fields[i].0.required(g)?))
                    })
                    .collect();
                (policy, needs, reads)
            })
            .collect();
        let full = Slice::new(members.iter());
        Slices {
            fields,
            members,
            full,
            sets: (0..keys).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The context fields the key reads, in key order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(f, _)| f.name())
    }

    /// How many keys (slices) there are.
    pub fn keys(&self) -> usize {
        self.sets.len()
    }

    /// The key of a request whose context field values `value` returns;
    /// `None` (the full set) when a key field is missing or of another type.
    pub fn key<'v>(&self, value: impl Fn(&str) -> Option<GuardValue<'v>>) -> Option<usize> {
        let mut key = 0;
        for (field, stride) in &self.fields {
            key += field.code(value(field.name())?)? * stride;
        }
        Some(key)
    }

    /// Every policy of the action.
    pub fn full(&self) -> &Slice {
        &self.full
    }

    /// The slice of a key (see [`Slices::key`]): every policy none of whose
    /// leading guards the key falsifies.
    pub fn set(&self, key: Option<usize>) -> &Slice {
        let (Some(key), Some(slot)) = (key, key.and_then(|k| self.sets.get(k))) else {
            return &self.full;
        };
        slot.get_or_init(|| {
            Slice::new(self.members.iter().filter(|(_, needs, _)| {
                needs.iter().all(|(i, code)| {
                    let (field, stride) = &self.fields[*i];
                    (key / stride) % field.radix() == *code
                })
            }))
        })
    }

    /// The slice for a request whose context field values `value` returns.
    pub fn select<'v>(&self, value: impl Fn(&str) -> Option<GuardValue<'v>>) -> &Slice {
        self.set(self.key(value))
    }
}
