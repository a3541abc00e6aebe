//! Text-line recognisers (PP-OCR and others with a CTC head): greedy decoding
//! with the character dictionary stored in the model's metadata, exact-line
//! match and character error rate.

use crate::data::Array;
use crate::{Error, Result};

/// CTC index 0 is the blank; index i is dictionary line i−1; one past the
/// dictionary is a space (PaddleOCR's `use_space_char`).
#[derive(Clone, Debug)]
pub struct CtcDecoder {
    characters: Vec<String>,
}

impl CtcDecoder {
    /// From the model's `character` metadata (one character a line).
    pub fn from_model<'m>(model: impl Into<crate::runtime::Runnable<'m>>) -> Result<CtcDecoder> {
        let dict = model
            .into()
            .metadata("character")
            .ok_or_else(|| Error::Usage("the model has no 'character' metadata to decode text with".into()))?;
        Ok(CtcDecoder { characters: dict.split('\n').map(str::to_string).collect() })
    }

    /// Greedy decoding of an output [N, T, C]: best class per step, repeats
    /// merged, blanks dropped.
    pub fn decode(&self, output: &Array) -> Result<Vec<String>> {
        let f = output.to_f32();
        let &[n, t, c] = f.shape() else {
            return Err(Error::Model(format!("a CTC output must be [N, T, C], not {:?}", f.shape())));
        };
        let f = f.as_standard_layout();
        let flat = f.as_slice().expect("standard layout");
        Ok((0..n)
            .map(|i| {
                let mut text = String::new();
                let mut prev = 0usize;
                for step in 0..t {
                    let row = &flat[(i * t + step) * c..(i * t + step + 1) * c];
                    let k = super::argmax(row.iter());
                    if k != 0 && k != prev {
                        text.push_str(self.characters.get(k - 1).map(String::as_str).unwrap_or(" "));
                    }
                    prev = k;
                }
                text
            })
            .collect())
    }
}

/// A line read against the line expected: whether it is exact, its edit
/// distance and the expected line's length. Both are compared with their ends
/// trimmed: a recogniser reads the padding right of the text as blank or as a
/// space by a hair's breadth (ppocr_rec_v4 in float ends 7 of the 128 test lines
/// in a space), and an invisible space there is no misreading. PaddleOCR's own
/// `RecMetric` ignores every space; spaces inside a line still count here.
pub fn score_line(got: &str, want: &str) -> (bool, usize, usize) {
    let (got, want) = (got.trim(), want.trim());
    (got == want, edit_distance(got, want), want.chars().count())
}

/// Edit distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + (ca != cb) as usize).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn greedy_decoding_merges_repeats_and_drops_blanks() {
        let d = CtcDecoder { characters: vec!["a".into(), "b".into()] };
        // classes: 0 blank, 1 'a', 2 'b', 3 space; steps: a a blank a b space
        let steps = [1, 1, 0, 1, 2, 3];
        let mut v = vec![0f32; steps.len() * 4];
        for (t, &k) in steps.iter().enumerate() {
            v[t * 4 + k] = 1.0;
        }
        let out = Array::F32(ArrayD::from_shape_vec(IxDyn(&[1, 6, 4]), v).unwrap());
        assert_eq!(d.decode(&out).unwrap(), vec!["aab ".to_string()]);
    }

    #[test]
    fn lines_are_scored_with_their_ends_trimmed_and_inner_spaces_kept() {
        assert_eq!(score_line("ab ", "ab"), (true, 0, 2));
        assert_eq!(score_line(" ab", "ab"), (true, 0, 2));
        assert_eq!(score_line("a b", "ab"), (false, 1, 2));
        assert_eq!(score_line("ac", "ab"), (false, 1, 2));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("日本", "日本"), 0);
    }
}
