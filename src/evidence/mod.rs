//! Evidence: the report model, its renderings (text, JSON, and the machine
//! formats SARIF, JUnit XML and OSCAL), the signed pack and its verification.

pub mod assessment;
pub mod dsse;
pub mod formats;
pub mod junit;
pub mod keys;
pub mod manifest;
pub mod oscal;
pub mod pack;
pub mod render;
pub mod report;
pub mod sarif;
pub mod text;
pub mod verify;
