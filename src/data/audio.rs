//! Audio as data: mono WAV files (one, or a folder with one class per
//! subfolder) read by `hound`, cut into frames of the model input's length.

use super::images::entries;
use super::Array;
use crate::ir::{Dim, ValueInfo};
use crate::{Error, Result};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

pub fn is_wav(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

#[derive(Debug)]
pub struct Clips {
    /// Samples of each file in [-1, 1], with the file and its class.
    clips: Vec<(PathBuf, Vec<f32>, Option<i64>)>,
}

impl Clips {
    /// Reads `path` (a WAV file, or a folder of them, or of class subfolders of them); every
    /// file must be mono and share one sample rate (`sample_rate`, when given).
    pub fn read(path: &Path, sample_rate: Option<u32>) -> Result<Clips> {
        let mut files: Vec<(PathBuf, Option<i64>)> = Vec::new();
        if path.is_file() {
            files.push((path.to_path_buf(), None));
        } else {
            let (dirs, loose) = entries(path)?;
            files.extend(loose.into_iter().filter(|f| is_wav(f)).map(|f| (f, None)));
            if files.is_empty() {
                let mut class = 0;
                for dir in dirs {
                    let wavs: Vec<PathBuf> = entries(&dir)?.1.into_iter().filter(|f| is_wav(f)).collect();
                    if !wavs.is_empty() {
                        files.extend(wavs.into_iter().map(|f| (f, Some(class))));
                        class += 1;
                    }
                }
            }
        }
        if files.is_empty() {
            return Err(Error::Data(format!("{}: no WAV files", path.display())));
        }
        let mut clips = Vec::new();
        let mut rate = sample_rate;
        for (file, label) in files {
            let bad = |why: String| Error::Data(format!("{}: {why}", file.display()));
            let mut reader =
                hound::WavReader::open(&file).map_err(|e| bad(format!("not a readable WAV file ({e})")))?;
            let spec = reader.spec();
            if spec.channels != 1 {
                return Err(bad(format!("{} channels: prunq takes mono audio", spec.channels)));
            }
            match rate {
                Some(r) if r != spec.sample_rate => {
                    return Err(bad(format!("sampled at {} Hz, expected {r} Hz", spec.sample_rate)));
                }
                _ => rate = Some(spec.sample_rate),
            }
            let samples: Vec<f32> = match spec.sample_format {
                hound::SampleFormat::Float => reader.samples::<f32>().collect::<std::result::Result<_, _>>(),
                hound::SampleFormat::Int => {
                    let full = (1i64 << (spec.bits_per_sample - 1)) as f32;
                    reader.samples::<i32>().map(|s| s.map(|v| v as f32 / full)).collect()
                }
            }
            .map_err(|e| bad(format!("cannot read samples ({e})")))?;
            clips.push((file, samples, label));
        }
        Ok(Clips { clips })
    }

    /// Every clip cut into consecutive frames of the input's length (its last
    /// fixed dim, or `frame`), the last one padded with silence, shaped like the input.
    pub fn frames(&self, input: &ValueInfo, frame: Option<usize>) -> Result<(Array, Option<Vec<i64>>)> {
        let shape = input.shape().unwrap_or_default();
        let last = match shape.last() {
            Some(Dim::Fixed(n)) if *n > 0 => Some(*n as usize),
            _ => None,
        };
        let len = frame.or(last).ok_or_else(|| {
            Error::Usage(format!(
                "input '{}' has no fixed length: say how many samples a frame holds (option max-len)",
                input.name
            ))
        })?;
        let (mut data, mut labels) = (Vec::new(), Vec::new());
        for (_, samples, label) in &self.clips {
            for chunk in samples.chunks(len).chain(samples.is_empty().then_some(&[][..])) {
                data.extend_from_slice(chunk);
                data.resize(data.len() + len - chunk.len(), 0.0);
                labels.push(*label);
            }
        }
        let rows = labels.len();
        // [N, len], or [N, 1, …, len] for an input of more dims.
        let mut dims = vec![rows];
        dims.extend(std::iter::repeat_n(1, shape.len().saturating_sub(2)));
        dims.push(len);
        let array = ArrayD::from_shape_vec(IxDyn(&dims), data).map_err(|e| Error::Data(e.to_string()))?;
        let labels = labels.iter().copied().collect::<Option<Vec<i64>>>();
        Ok((Array::F32(array), labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DataType;

    fn write(path: &Path, rate: u32, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        samples.iter().for_each(|s| w.write_sample(*s).unwrap());
        w.finalize().unwrap();
    }

    #[test]
    fn clips_are_cut_into_frames_with_labels_from_folders() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("no", 5), ("yes", 3)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            write(&dir.path().join(class).join("a.wav"), 8000, &vec![16384; n]);
        }
        let clips = Clips::read(dir.path(), Some(8000)).unwrap();
        let dims = [Dim::Symbolic("N".into()), Dim::Fixed(1), Dim::Fixed(4)];
        let input = ValueInfo::tensor("audio", Some(DataType::FLOAT), Some(&dims));
        let (frames, labels) = clips.frames(&input, None).unwrap();
        assert_eq!(frames.shape(), [3, 1, 4]);
        assert_eq!(labels, Some(vec![0, 0, 1]));
        let f = frames.to_f32();
        assert_eq!(f.iter().copied().collect::<Vec<_>>()[..8], [0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0]);
        let e = Clips::read(dir.path(), Some(16000)).unwrap_err().to_string();
        assert!(e.contains("a.wav") && e.contains("8000 Hz"), "{e}");
    }
}
