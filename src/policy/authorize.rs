//! One Cedar decision, asked of the authorizer that `cedar_policy` wraps.
//!
//! `cedar_policy::Authorizer::is_authorized` is a thin layer over
//! `cedar_policy_core::authorizer::Authorizer::is_authorized_core`, which
//! evaluates every policy of the set against the request. Around that call
//! the layer does work whose result this tool never reads, once per request:
//! it clones the request; it turns the core's answer into a `Response` by
//! rebuilding every determining policy as a new `Policy` (condition, template
//! and slots derived afresh) only to keep its id; and it copies the answer's
//! diagnostics once more. Building the request's `Context` with
//! `Context::from_pairs` runs it through Cedar's restricted-expression
//! evaluator, although a context of literals evaluates to itself. Together
//! these took about a sixth of the CPU spent evaluating W10
//! (`docs/performance.md`).
//!
//! Here the same core authorizer decides the same request, and the answer is
//! read the way `Response` reads it: **Deny** unless some permit is satisfied
//! and no forbid is; the determining policies are the satisfied forbids if
//! there are any, else the satisfied permits; every evaluation error is kept,
//! with Cedar's message. The request's entity uids are shared (`Arc`) rather
//! than copied, and its context is built from literal values directly, which
//! is what the restricted evaluator produces for them. Tests here and in
//! `policy::tests` check that every decision, determining policy and error
//! equals `cedar_policy::Authorizer::is_authorized`'s.
//!
//! The types used here are `cedar_policy_core`'s, which `cedar_policy` marks
//! internal; `Cargo.toml` pins `cedar-policy` and `cedar-policy-core` to the
//! same exact version (`cedar-policy` requires its core at exactly its own),
//! so the two cannot drift apart, and upgrading Cedar reruns those tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::{AuthorizationError, Entities, EntityUid, PolicySet, RestrictedExpression};
use cedar_policy_core::ast;
use cedar_policy_core::authorizer::{Authorizer, PartialResponse};

/// An entity uid in the form the core authorizer takes, cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Uid(Arc<ast::EntityUID>);

impl From<EntityUid> for Uid {
    fn from(uid: EntityUid) -> Self {
        Uid(Arc::new(uid.into()))
    }
}

impl Uid {
    /// The same uid in `cedar_policy`'s form.
    pub(super) fn to_api(&self) -> EntityUid {
        EntityUid::from(ast::EntityUID::clone(&self.0))
    }

    fn entry(&self) -> ast::EntityUIDEntry {
        ast::EntityUIDEntry::Known {
            euid: Arc::clone(&self.0),
            loc: None,
        }
    }
}

/// A literal context value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Literal<'a> {
    /// A string.
    Str(&'a str),
    /// A long.
    Long(i64),
    /// A boolean.
    Bool(bool),
}

impl Literal<'_> {
    /// The same value for `cedar_policy::Context::from_pairs` (the public
    /// API's way, for the benchmark floor and the equivalence tests).
    pub(super) fn restricted(self) -> RestrictedExpression {
        match self {
            Literal::Str(s) => RestrictedExpression::new_string(s.to_owned()),
            Literal::Long(n) => RestrictedExpression::new_long(n),
            Literal::Bool(b) => RestrictedExpression::new_bool(b),
        }
    }

    fn value(self) -> ast::Value {
        match self {
            Literal::Str(s) => ast::Value::from(s),
            Literal::Long(n) => ast::Value::from(n),
            Literal::Bool(b) => ast::Value::from(b),
        }
    }
}

/// What Cedar answered for one request.
#[derive(Debug)]
pub(super) struct Answer(PartialResponse);

impl Answer {
    /// Whether the decision is Deny: unless some permit is satisfied and no
    /// forbid is (`Response`'s rule).
    pub(super) fn deny(&self) -> bool {
        self.0.satisfied_permits.is_empty() || !self.0.satisfied_forbids.is_empty()
    }

    /// The determining policies' ids, sorted (Cedar keeps them unordered):
    /// the satisfied forbids if there are any, else the satisfied permits —
    /// what `Response::diagnostics().reason()` lists.
    pub(super) fn reasons(&self) -> Vec<String> {
        let determining = if self.0.satisfied_forbids.is_empty() {
            &self.0.satisfied_permits
        } else {
            &self.0.satisfied_forbids
        };
        let mut ids: Vec<String> = determining.keys().map(ToString::to_string).collect();
        ids.sort();
        ids
    }

    /// The policies that raised an error, with Cedar's message (as
    /// `Response::diagnostics().errors()` gives them).
    pub(super) fn errors(&self) -> impl Iterator<Item = AuthorizationError> + '_ {
        self.0.errors.iter().cloned().map(Into::into)
    }
}

/// One request, as the core authorizer takes it.
#[derive(Debug)]
pub(super) struct Query(ast::Request);

impl Query {
    /// `principal` doing `action` on `resource` with `context`. A context
    /// field named twice is refused, as `Context::from_pairs` refuses it.
    pub(super) fn new<'c>(
        principal: &Uid,
        action: &Uid,
        resource: &Uid,
        context: impl IntoIterator<Item = (&'c str, Literal<'c>)>,
    ) -> Result<Self, String> {
        let mut fields = BTreeMap::new();
        for (name, value) in context {
            if fields.insert(name.into(), value.value()).is_some() {
                return Err(format!("the context field `{name}` is given twice"));
            }
        }
        Ok(Query(ast::Request::new_unchecked(
            principal.entry(),
            action.entry(),
            resource.entry(),
            Some(ast::Context::Value(Arc::new(fields))),
        )))
    }
}

/// Decides requests; it holds no request state, so one can serve many.
#[derive(Debug, Default)]
pub(super) struct Decider {
    authorizer: Authorizer,
}

impl Decider {
    /// Decides `query` against `policies`, with `store` as the entities.
    pub(super) fn decide(
        &self,
        query: Query,
        policies: &PolicySet,
        store: &Entities,
    ) -> Result<Answer, String> {
        let answer = self
            .authorizer
            .is_authorized_core(query.0, policies.as_ref(), store.as_ref());
        // Every value is known, so nothing can be left unevaluated; if
        // something were, no decision could be read from the answer.
        if !answer.residual_permits.is_empty() || !answer.residual_forbids.is_empty() {
            return Err("Cedar left part of a policy unevaluated".to_owned());
        }
        Ok(Answer(answer))
    }
}

/// What a decision comes to, read from either API, for the equivalence
/// tests (here and in `policy::tests`).
#[cfg(test)]
pub(super) mod outcome {
    use super::Answer;
    use cedar_policy::{AuthorizationError, Decision, Response};

    /// The decision, the determining policies and the errors (policy and
    /// Cedar's message), each sorted.
    pub(crate) type Outcome = (Decision, Vec<String>, Vec<String>);

    fn error_line(e: &AuthorizationError) -> String {
        let AuthorizationError::PolicyEvaluationError(pe) = e;
        format!("{}: {e}", pe.policy_id())
    }

    /// What `cedar_policy::Authorizer::is_authorized` answered.
    pub(crate) fn of_response(response: &Response) -> Outcome {
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        reasons.sort();
        let mut errors: Vec<String> = response.diagnostics().errors().map(error_line).collect();
        errors.sort();
        (response.decision(), reasons, errors)
    }

    /// What [`super::Decider`] answered.
    pub(crate) fn of_answer(answer: &Answer) -> Outcome {
        let mut errors: Vec<String> = answer.errors().map(|e| error_line(&e)).collect();
        errors.sort();
        let decision = if answer.deny() {
            Decision::Deny
        } else {
            Decision::Allow
        };
        (decision, answer.reasons(), errors)
    }
}

#[cfg(test)]
mod tests {
    use super::outcome::{of_answer, of_response, Outcome};
    use super::*;
    use cedar_policy::{Authorizer, Context, Decision, Request};
    use std::str::FromStr;

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    fn by_public_api(policies: &PolicySet, context: &[(&str, Literal<'_>)]) -> Outcome {
        let context = Context::from_pairs(
            context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.restricted())),
        )
        .unwrap();
        let request = Request::new(
            uid(r#"P::"alice""#),
            uid(r#"A::"read""#),
            uid(r#"R::"doc""#),
            context,
            None,
        )
        .unwrap();
        of_response(&Authorizer::new().is_authorized(&request, policies, &Entities::empty()))
    }

    fn by_decider(policies: &PolicySet, context: &[(&str, Literal<'_>)]) -> Outcome {
        let query = Query::new(
            &uid(r#"P::"alice""#).into(),
            &uid(r#"A::"read""#).into(),
            &uid(r#"R::"doc""#).into(),
            context.iter().copied(),
        )
        .unwrap();
        of_answer(
            &Decider::default()
                .decide(query, policies, &Entities::empty())
                .unwrap(),
        )
    }

    #[test]
    fn decides_as_the_public_authorizer_does() {
        let sets = [
            // No policy: Deny, nothing determining.
            "",
            // A permit alone: Allow.
            "@id(\"p\") permit(principal, action, resource);",
            // A permit whose condition does not hold: Deny, nothing determining.
            "@id(\"p\") permit(principal, action, resource) when { context.n > 5 };",
            // Two forbids and a permit: Deny, both forbids determining.
            "@id(\"p\") permit(principal, action, resource);
             @id(\"f1\") forbid(principal, action, resource) when { context.flag };
             @id(\"f2\") forbid(principal, action, resource) when { context.s == \"x\" };
             @id(\"f3\") forbid(principal, action, resource) when { context.n > 100 };",
            // Errors: a missing field, a wrong type, an overflow; the
            // erring permit does not allow.
            "@id(\"p\") permit(principal, action, resource) when { context.missing };
             @id(\"q\") permit(principal, action, resource);
             @id(\"f0\") forbid(principal, action, resource) when { context.n == 7 };
             @id(\"f1\") forbid(principal, action, resource) when { context.s > 1 };
             @id(\"f2\") forbid(principal, action, resource) when { context.n + 9223372036854775807 > 0 };",
            // Two permits, both determining; a scope that does not match.
            "@id(\"p1\") permit(principal, action, resource);
             @id(\"p2\") permit(principal == P::\"alice\", action, resource);
             @id(\"f\") forbid(principal == P::\"bob\", action, resource);",
        ];
        let contexts: [&[(&str, Literal<'_>)]; 4] = [
            &[],
            &[
                ("flag", Literal::Bool(true)),
                ("s", Literal::Str("x")),
                ("n", Literal::Long(7)),
            ],
            &[
                ("flag", Literal::Bool(false)),
                ("s", Literal::Str("y")),
                ("n", Literal::Long(101)),
            ],
            &[
                ("flag", Literal::Bool(false)),
                ("s", Literal::Str("")),
                ("n", Literal::Long(1)),
            ],
        ];
        let mut seen = std::collections::BTreeSet::new();
        for src in sets {
            let policies = PolicySet::from_str(src).unwrap();
            let policies = {
                // Key each policy by its `@id`, as the pack does.
                let mut set = PolicySet::new();
                for p in policies.policies() {
                    let id = p.annotation("id").unwrap().to_owned();
                    set.add(p.new_id(cedar_policy::PolicyId::new(id))).unwrap();
                }
                set
            };
            for context in contexts {
                let expected = by_public_api(&policies, context);
                assert_eq!(
                    by_decider(&policies, context),
                    expected,
                    "{src} {context:?}"
                );
                seen.insert((
                    expected.0 == Decision::Deny,
                    expected.1.is_empty(),
                    expected.2.is_empty(),
                ));
            }
        }
        // Allow and Deny, with and without determining policies and errors.
        for wanted in [
            (false, false, true),
            (true, true, true),
            (true, false, true),
            (true, false, false),
            (true, true, false),
        ] {
            assert!(seen.contains(&wanted), "{wanted:?} not covered: {seen:?}");
        }
    }

    #[test]
    fn a_context_field_given_twice_is_refused() {
        let err = Query::new(
            &uid(r#"P::"alice""#).into(),
            &uid(r#"A::"read""#).into(),
            &uid(r#"R::"doc""#).into(),
            [("n", Literal::Long(1)), ("n", Literal::Long(2))],
        )
        .unwrap_err();
        assert!(err.contains("`n` is given twice"), "{err}");
    }

    #[test]
    fn uids_convert_both_ways_unchanged() {
        let api = uid(r#"SyncProof::Identity::"svc \"quoted\"""#);
        assert_eq!(Uid::from(api.clone()).to_api(), api);
    }
}
