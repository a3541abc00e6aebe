//! prunq: prune and quantize ONNX models, check they still work, write standard ONNX or LiteRT.
//!
//! See ARCHITECTURE.md for the codemap. In short: `onnx` reads and writes
//! files into the `ir`; `analysis` measures an IR model; `runtime` runs it in
//! ONNX Runtime or tract (and a `.tflite` in LiteRT); `data` feeds it; `measure` is what every
//! pass shares to run data through a model (the one collector of statistics within a memory
//! budget, the judge, made-up inputs, progress); `eval` judges models; `quant`, `prune`,
//! `transform` and `optimize` change them; `litert` writes them as LiteRT; `job` is one
//! function per command — the pass, then check → save → compare → time → report —
//! that the CLI (and any other front end) calls; `report` renders.

#![warn(missing_docs)]

pub mod analysis;
/// The `prunq` command line (clap): parses, opens files and data, calls a [`job`].
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
mod error;
pub mod eval;
pub mod ir;
pub mod job;
pub mod layerwise;
pub mod litert;
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

    /// Every `crate::name` and every name of a `crate::{a, b::c}` group in `path` (a file, or a
    /// folder read whole).
    fn uses(path: &Path, found: &mut BTreeSet<String>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).expect("folder").flatten() {
                uses(&entry.path(), found);
            }
            return;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            return;
        }
        let text = std::fs::read_to_string(path).expect("source");
        let word = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                // The first word of each top-level item, nested groups skipped.
                let (mut depth, mut item_start) = (0, true);
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && !c.is_whitespace() => {
                            item_start = false;
                            let name = word(&group[j..]);
                            if !name.is_empty() {
                                found.insert(name);
                            }
                        }
                        _ => {}
                    }
                }
            } else if !word(rest).is_empty() {
                found.insert(word(rest));
            }
        }
    }

    #[test]
    fn folders_use_only_what_architecture_md_allows() {
        let table = table();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for (folder, allowed) in &table {
            let (dir, file) = (src.join(folder), src.join(format!("{folder}.rs")));
            if folder == "cli" || folder == "proto" {
                continue;
            }
            let mut found = BTreeSet::new();
            match (dir.is_dir(), file.is_file()) {
                (true, _) => uses(&dir, &mut found),
                (false, true) => uses(&file, &mut found),
                _ => panic!("ARCHITECTURE.md names src/{folder}, which does not exist"),
            }
            found.remove(folder);
            let undeclared: Vec<_> = found.difference(allowed).collect();
            assert!(
                undeclared.is_empty(),
                "src/{folder} uses {undeclared:?}, which its row in ARCHITECTURE.md does not list"
            );
            checked += 1;
        }
        assert!(checked >= 14, "only {checked} folders found in ARCHITECTURE.md's table");
    }

    #[test]
    fn groups_and_single_file_modules_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.rs");
        std::fs::write(
            &file,
            "use crate::{data::Array, measure::{Progress, Silent}, ir};\nuse crate::eval::compare;\n",
        )
        .expect("write");
        let mut found = BTreeSet::new();
        uses(&file, &mut found);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["data", "eval", "ir", "measure"]);
    }
}
