//! Text as data: a `.txt` with one sentence a line (optionally a tab and a
//! label), tokenized by a Hugging Face `tokenizer.json` (the `tokenizers`
//! crate) into the ids, attention mask and token type ids a model takes.

use super::Array;
use crate::ir::{Dim, ValueInfo};
use crate::{Error, Result};
use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

#[derive(Debug)]
pub struct TextLines {
    path: PathBuf,
    pub lines: Vec<String>,
    /// From a second, tab-separated column: whole numbers as they are, names
    /// as their index among the sorted names.
    pub labels: Option<Vec<i64>>,
}

impl TextLines {
    pub fn read(path: &Path) -> Result<TextLines> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if rows.is_empty() {
            return Err(Error::Data(format!("{}: no lines of text", path.display())));
        }
        let split: Vec<Option<(&str, &str)>> = rows.iter().map(|l| l.rsplit_once('\t')).collect();
        let labelled = split.iter().filter(|s| s.is_some()).count();
        if labelled == 0 {
            return Ok(TextLines {
                path: path.into(),
                lines: rows.iter().map(|l| l.to_string()).collect(),
                labels: None,
            });
        }
        if labelled != rows.len() {
            let line = split.iter().position(Option::is_none).unwrap_or(0) + 1;
            return Err(Error::Data(format!(
                "{}: line {line} has no label, other lines end in a tab and a label",
                path.display()
            )));
        }
        let pairs: Vec<(&str, &str)> = split.into_iter().flatten().collect();
        let names: Vec<&str> = pairs.iter().map(|(_, l)| l.trim()).collect();
        let labels = match names.iter().map(|l| l.parse::<i64>()).collect::<std::result::Result<Vec<_>, _>>() {
            Ok(numbers) => numbers,
            Err(_) => {
                let mut sorted = names.clone();
                sorted.sort();
                sorted.dedup();
                names.iter().map(|n| sorted.binary_search(n).unwrap_or(0) as i64).collect()
            }
        };
        Ok(TextLines {
            path: path.into(),
            lines: pairs.iter().map(|(t, _)| t.to_string()).collect(),
            labels: Some(labels),
        })
    }

    /// The lines tokenized for `inputs`, by input name: `*ids` (not type/position ids) take
    /// the token ids, `*mask*` the attention mask, `*type*`/`*segment*` the token type ids.
    /// Each line is cut or padded to `max_len` tokens (default: the inputs' fixed length).
    pub fn tokenize(
        &self,
        tokenizer: &Path,
        max_len: Option<usize>,
        inputs: &[ValueInfo],
    ) -> Result<BTreeMap<String, Array>> {
        let fixed_len = inputs.iter().find_map(|i| match i.shape()?.get(1)? {
            Dim::Fixed(n) if *n > 0 => Some(*n as usize),
            _ => None,
        });
        let max_len = max_len.or(fixed_len).ok_or_else(|| {
            Error::Usage(format!(
                "{}: say how many tokens a line is cut or padded to (option max-len)",
                self.path.display()
            ))
        })?;
        let mut tok = Tokenizer::from_file(tokenizer)
            .map_err(|e| Error::Data(format!("{}: not a tokenizer.json ({e})", tokenizer.display())))?;
        let padding = PaddingParams {
            strategy: PaddingStrategy::Fixed(max_len),
            ..tok.get_padding().cloned().unwrap_or_default()
        };
        let truncation = TruncationParams { max_length: max_len, ..tok.get_truncation().cloned().unwrap_or_default() };
        tok.with_padding(Some(padding));
        tok.with_truncation(Some(truncation)).map_err(|e| Error::Data(format!("{}: {e}", tokenizer.display())))?;
        let encodings = tok
            .encode_batch(self.lines.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(|e| Error::Data(format!("{}: tokenizing failed ({e})", self.path.display())))?;
        let column = |get: &dyn Fn(&tokenizers::Encoding) -> &[u32]| {
            let mut a = Array2::<i64>::zeros((encodings.len(), max_len));
            for (mut row, e) in a.rows_mut().into_iter().zip(&encodings) {
                for (slot, v) in row.iter_mut().zip(get(e)) {
                    *slot = i64::from(*v);
                }
            }
            Array::I64(a.into_dyn())
        };
        let mut out = BTreeMap::new();
        for input in inputs {
            let name = input.name.to_ascii_lowercase();
            let array = if name.contains("mask") {
                column(&|e| e.get_attention_mask())
            } else if name.contains("type") || name.contains("segment") {
                column(&|e| e.get_type_ids())
            } else if name.contains("ids") && !name.contains("position") {
                column(&|e| e.get_ids())
            } else {
                return Err(Error::Data(format!(
                    "{}: the model input '{}' is not token ids, an attention mask or token type ids",
                    self.path.display(),
                    input.name
                )));
            };
            out.insert(input.name.clone(), array);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_a_second_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "good film\tpos\nbad film\tneg\n\nfine\tpos\n").unwrap();
        let t = TextLines::read(&p).unwrap();
        assert_eq!(t.lines, ["good film", "bad film", "fine"]);
        assert_eq!(t.labels, Some(vec![1, 0, 1]));
        std::fs::write(&p, "a\t3\nb\t1\n").unwrap();
        assert_eq!(TextLines::read(&p).unwrap().labels, Some(vec![3, 1]));
        std::fs::write(&p, "a\t3\nb\n").unwrap();
        assert!(TextLines::read(&p).unwrap_err().to_string().contains("line 2 has no label"));
    }
}
