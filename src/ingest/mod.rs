//! Ingest: a collection directory becomes validated, typed records.

pub mod model;
pub(crate) mod raw;
