//! prunq: prune and quantize ONNX models, check they still work, write standard ONNX.
//!
//! See ARCHITECTURE.md for the codemap. In short: `onnx` reads and writes
//! files into the `ir`; `analysis` measures an IR model; `runtime` runs it in
//! ONNX Runtime or tract; `data` feeds it; `measure` is what every pass shares to
//! run data through a model (progress, made-up inputs); `eval` judges models;
//! `quant`, `prune`, `transform` and `optimize` change them; `job` is one
//! function per command — the pass, then check → save → compare → time → report —
//! that the CLI (and any other front end) calls; `report` renders.

#![warn(missing_docs)]

pub mod analysis;
pub mod data;
mod error;
pub mod eval;
pub mod ir;
pub mod job;
pub mod layerwise;
pub mod measure;
pub mod onnx;
pub mod optimize;
pub mod parallel;
pub mod proto;
pub mod prune;
pub mod quant;
pub mod report;
pub mod runtime;
pub mod transform;

pub use error::{Error, Result};

/// ARCHITECTURE.md's "may use" table is the law: every `crate::…` a folder
/// names must be listed in its row.
#[cfg(test)]
mod architecture {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn table() -> BTreeMap<String, BTreeSet<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let mut rows = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("| `src/")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let folder = cells[1].trim_matches('`').trim_start_matches("src/").trim_end_matches('/');
            let folder = folder.trim_end_matches(".rs").to_string();
            // Every `name` or `name::Item` in the last column is a folder it may use.
            let allowed = cells[cells.len() - 2]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|s| s.split("::").next().unwrap_or(s).to_string())
                .collect();
            rows.insert(folder, allowed);
        }
        rows
    }

    fn uses(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                uses(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                for (i, _) in text.match_indices("crate::") {
                    let name: String =
                        text[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            }
        }
    }

    #[test]
    fn folders_use_only_what_architecture_md_allows() {
        let table = table();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for (folder, allowed) in &table {
            let dir = src.join(folder);
            if !dir.is_dir() || folder == "cli" || folder == "proto" {
                continue;
            }
            let mut found = BTreeSet::new();
            uses(&dir, &mut found);
            found.remove(folder);
            let undeclared: Vec<_> = found.difference(allowed).collect();
            assert!(
                undeclared.is_empty(),
                "src/{folder} uses {undeclared:?}, which its row in ARCHITECTURE.md does not list"
            );
            checked += 1;
        }
        assert!(checked >= 9, "only {checked} folders found in ARCHITECTURE.md's table");
    }
}
