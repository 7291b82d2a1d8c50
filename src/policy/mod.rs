//! Policy: reconciled facts become Cedar entities and requests; Cedar decides;
//! deny decisions become findings mapped to controls.
//!
//! The rules live in Cedar (`policies/`), not in Rust: this module only turns
//! facts into requests and decisions into findings.

mod authorize;
pub mod controls;
mod evaluate;
pub mod exceptions;
pub mod findings;
pub mod pack;
pub mod slice;
pub mod subjects;
#[cfg(test)]
mod tests;

pub use evaluate::{
    cedar_floor, evaluate, reconcile_and_evaluate, CedarFloor, EvaluateError, EvaluateOptions,
};
pub use findings::{Evaluation, Finding, Severity, Subject, SubjectKind};
pub use pack::{CompiledPack, PolicyError, PolicyPack};
