//! Presenting results: text tables (JSON comes from serde on the reports).

pub mod table;
pub mod text;
