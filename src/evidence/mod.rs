//! Evidence: the report model, its renderings, the signed pack and its
//! verification.

pub mod assessment;
pub mod text;
