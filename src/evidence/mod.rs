//! Evidence: the report model, its renderings, the signed pack and its
//! verification.

pub mod assessment;
pub mod dsse;
pub mod keys;
pub mod manifest;
pub mod pack;
pub mod render;
pub mod report;
pub mod text;
pub mod verify;
