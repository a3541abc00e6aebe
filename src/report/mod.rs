//! Presenting results: text tables, the HTML page (JSON comes from serde on the reports).

pub mod html;
pub mod table;
pub mod text;
