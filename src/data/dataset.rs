//! A data set bound to a model's inputs: arrays matched by name, checked
//! against the declared shapes and types, served in batches. Besides `.npz`
//! and `.npy`, a folder of images, a text file with a tokenizer, or WAV audio
//! (told apart by what the path is).

use super::audio::{is_wav, Clips};
use super::images::{is_image, ImageFeed, ImageFiles};
use super::text::TextLines;
use super::{npz, Array, Preprocess};
use crate::ir::{DataType, Dim, ValueInfo};
use crate::{Error, Result};
use ndarray::ArrayD;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Names tried, in order, for the label array when none is given.
pub const DEFAULT_LABEL_NAMES: [&str; 3] = ["label", "labels", "y"];

/// How files that are not arrays become model inputs (the command line's global data flags).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct DataOptions {
    /// How images become inputs when data is a folder of images: e.g.
    /// "resize=48x320,keep-aspect,pad=0,layout=NCHW,bgr,scale=1/255,mean=0.5,std=0.5", or a TOML
    /// file with those keys (default: the model's size, RGB, pixels 0–255 as they are).
    #[cfg_attr(feature = "cli", arg(long, global = true, value_parser = Preprocess::parse))]
    pub preprocess: Option<Preprocess>,
    /// The model's Hugging Face tokenizer.json, for data given as a .txt (one sentence a line).
    #[cfg_attr(feature = "cli", arg(long, global = true))]
    pub tokenizer: Option<PathBuf>,
    /// Tokens a line of text is cut or padded to; samples in a frame of audio (default: the
    /// input's fixed length).
    #[cfg_attr(feature = "cli", arg(long, global = true))]
    pub max_len: Option<usize>,
    /// The sample rate WAV files must have (default: whatever they share).
    #[cfg_attr(feature = "cli", arg(long, global = true))]
    pub sample_rate: Option<u32>,
}

/// Data to run models on: arrays (.npz/.npy), an image folder, text lines or WAV files — or some
/// of its rows ([`Dataset::rows`]), which share what was read.
#[derive(Clone)]
pub struct Dataset {
    /// Where it was read from (named in errors).
    pub path: PathBuf,
    source: Arc<Source>,
    options: DataOptions,
    /// Arrays match inputs exactly, by name and dtype (see [`Dataset::exact`]).
    exact: bool,
    /// The rows this view has, in order (indices into the data read); `None`: all of them.
    picked: Option<Arc<[usize]>>,
}

enum Source {
    Arrays(BTreeMap<String, Array>),
    Images(ImageFiles),
    Text(TextLines),
    Audio(Clips),
}

/// Inputs (in the model's input order) and labels, all with the same number of rows.
#[derive(Debug)]
pub struct Bound {
    /// The model inputs fed, in the model's input order.
    pub names: Vec<String>,
    columns: Vec<Column>,
    /// Class labels per row, when the data has them.
    pub labels: Option<ArrayD<i64>>,
    /// The number of rows.
    pub rows: usize,
    /// The batch size the model fixes (a declared `[1, …]` input), if any:
    /// batches never exceed it.
    pub max_batch: Option<usize>,
    /// Each input's batch axis; `None`: fed whole with every batch.
    pub axes: Vec<Option<usize>>,
    /// The rows of the columns this binding has (a [`Dataset::rows`] view); `None`: all of them.
    picked: Option<Arc<[usize]>>,
}

/// One input's data: in memory, or images decoded a batch at a time (cast to the input's type).
#[derive(Debug)]
enum Column {
    Array(Array),
    Images(ImageFeed, DataType),
}

impl Dataset {
    /// An `.npz`/`.npy` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Dataset> {
        Dataset::open_with(path, &DataOptions::default())
    }

    /// Arrays held in memory (`what` names them in errors).
    pub fn from_arrays(what: impl Into<PathBuf>, arrays: BTreeMap<String, Array>) -> Dataset {
        Dataset {
            path: what.into(),
            source: Arc::new(Source::Arrays(arrays)),
            options: DataOptions::default(),
            exact: false,
            picked: None,
        }
    }

    /// The same data with only rows `picked` (indices into this view's rows, as bound), in that
    /// order: what a pass fits to and what a check holds out from it.
    pub fn rows(&self, picked: &[usize]) -> Dataset {
        let picked: Arc<[usize]> = match &self.picked {
            Some(mine) => picked.iter().map(|&r| mine[r]).collect(),
            None => picked.into(),
        };
        Dataset { picked: Some(picked), ..self.clone() }
    }

    /// Arrays must be named and typed as the model's inputs, as ONNX Runtime takes them: for data
    /// a program built (a dict keyed by input name, a calibration reader), where another name or
    /// dtype is a mistake — not a file's arbitrary array name, nor pixels stored as uint8.
    pub fn exact(mut self) -> Dataset {
        self.exact = true;
        self
    }

    /// Arrays (`.npz`, `.npy`), images (a folder of them, subfolders as classes, or one file),
    /// text (`.txt`, one line a row, with `options.tokenizer`) or audio (`.wav`, or a folder of them).
    pub fn open_with(path: impl AsRef<Path>, options: &DataOptions) -> Result<Dataset> {
        let path = path.as_ref().to_path_buf();
        let source = if path.is_dir() {
            let (dirs, files) = super::images::entries(&path)?;
            let mut inside = files.clone();
            for d in &dirs {
                inside.extend(super::images::entries(d)?.1);
            }
            if inside.iter().any(|f| is_image(f)) {
                Source::Images(ImageFiles::list(&path)?)
            } else if inside.iter().any(|f| is_wav(f)) {
                Source::Audio(Clips::read(&path, options.sample_rate)?)
            } else {
                return Err(Error::Data(format!(
                    "{}: a folder of data holds images (png, jpg, jpeg, bmp, webp) or WAV files, directly or in \
                     one subfolder per class; this one has neither",
                    path.display()
                )));
            }
        } else if is_image(&path) {
            Source::Images(ImageFiles::list(&path)?)
        } else if is_wav(&path) {
            Source::Audio(Clips::read(&path, options.sample_rate)?)
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
            if options.tokenizer.is_none() {
                return Err(Error::Usage(format!(
                    "{}: text needs the model's tokenizer (option tokenizer: its tokenizer.json)",
                    path.display()
                )));
            }
            Source::Text(TextLines::read(&path)?)
        } else {
            Source::Arrays(npz::read_any(&path)?)
        };
        if let Source::Images(files) = &source {
            files.check_headers()?;
        }
        Ok(Dataset { path, source: Arc::new(source), options: options.clone(), exact: false, picked: None })
    }

    /// What the data was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, why: String) -> Error {
        Error::Data(format!("{}: {why}", self.path.display()))
    }

    /// Matches arrays to `inputs` (the model's graph inputs that are not
    /// constants). A model with one input takes the one non-label array, whatever
    /// its name. `labels`: the label array's name; `None` looks for the usual names.
    pub fn bind(&self, inputs: &[ValueInfo], labels: Option<&str>) -> Result<Bound> {
        let mut bound = self.bind_all(inputs, labels)?;
        if let Some(picked) = &self.picked {
            if let Some(&past) = picked.iter().find(|&&r| r >= bound.rows) {
                return Err(self.err(format!("row {past} asked of data with {} rows", bound.rows)));
            }
            bound.labels = bound.labels.map(|l| l.select(ndarray::Axis(0), picked));
            bound.rows = picked.len();
            bound.max_batch = bound.max_batch.filter(|&n| n < bound.rows);
            bound.picked = Some(picked.clone());
        }
        Ok(bound)
    }

    fn bind_all(&self, inputs: &[ValueInfo], labels: Option<&str>) -> Result<Bound> {
        let with_labels = |mut arrays: BTreeMap<String, Array>, found: Option<Vec<i64>>| {
            if let Some(l) = found {
                arrays.insert("label".into(), Array::I64(ndarray::Array1::from(l).into_dyn()));
            }
            arrays
        };
        match &*self.source {
            Source::Arrays(arrays) => self.bind_arrays(arrays, inputs, labels),
            Source::Text(text) => {
                let tokenizer = self.options.tokenizer.as_deref().unwrap_or(Path::new("tokenizer.json"));
                let arrays = text.tokenize(tokenizer, self.options.max_len, inputs)?;
                self.bind_arrays(&with_labels(arrays, text.labels.clone()), inputs, labels)
            }
            Source::Audio(clips) => {
                let input = self.only_input(inputs, "audio")?;
                let (frames, found) = clips.frames(input, self.options.max_len)?;
                let arrays = BTreeMap::from([(input.name.clone(), frames)]);
                self.bind_arrays(&with_labels(arrays, found), inputs, labels)
            }
            Source::Images(files) => self.bind_images(files, inputs),
        }
    }

    /// The model's one input, for data (images, audio) that makes one.
    fn only_input<'a>(&self, inputs: &'a [ValueInfo], what: &str) -> Result<&'a ValueInfo> {
        match inputs {
            [one] => Ok(one),
            _ => Err(self.err(format!(
                "{what} feeds a model with one input; this one takes {} ({})",
                inputs.len(),
                inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn bind_images(&self, files: &ImageFiles, inputs: &[ValueInfo]) -> Result<Bound> {
        let input = self.only_input(inputs, "an image folder")?;
        let dtype = input.dtype().unwrap_or(DataType::FLOAT);
        if !matches!(dtype, DataType::FLOAT | DataType::DOUBLE) {
            return Err(self.err(format!("input '{}' takes {dtype}: images feed float inputs", input.name)));
        }
        let spec = self.options.preprocess.clone().unwrap_or_default();
        let feed = ImageFeed::new(files, &spec, input)?;
        let max_batch = match input.shape().and_then(|s| s.first().cloned()) {
            Some(Dim::Fixed(n)) if n > 0 && (n as usize) < feed.len() => Some(n as usize),
            _ => None,
        };
        Ok(Bound {
            names: vec![input.name.clone()],
            rows: feed.len(),
            labels: files.labels.clone().map(|l| ndarray::Array1::from(l).into_dyn()),
            columns: vec![Column::Images(feed, dtype)],
            max_batch,
            axes: vec![Some(0)],
            picked: None,
        })
    }

    fn bind_arrays(
        &self,
        arrays: &BTreeMap<String, Array>,
        inputs: &[ValueInfo],
        labels: Option<&str>,
    ) -> Result<Bound> {
        let label_name = match labels {
            Some(l) if !arrays.contains_key(l) => {
                return Err(self.err(format!("no label array '{l}' (arrays: {})", names(arrays))));
            }
            Some(l) => Some(l.to_string()),
            None => DEFAULT_LABEL_NAMES.iter().find(|n| arrays.contains_key(**n)).map(|n| n.to_string()),
        };
        let candidates: Vec<&String> = arrays.keys().filter(|k| Some(k.as_str()) != label_name.as_deref()).collect();
        let mut raw = Vec::new();
        for input in inputs {
            let array = match arrays.get(&input.name) {
                Some(a) => a,
                None if !self.exact && inputs.len() == 1 && candidates.len() == 1 => &arrays[candidates[0]],
                None => {
                    return Err(self.err(format!(
                        "no array for model input '{}' (arrays: {})",
                        input.name,
                        names(arrays)
                    )))
                }
            };
            raw.push(array);
        }
        let axes = super::batch_axis::infer(inputs, &raw);
        for ((input, array), axis) in inputs.iter().zip(&raw).zip(&axes) {
            if let Some(axis) = axis.filter(|a| *a >= array.ndim()) {
                return Err(self.err(format!(
                    "input '{}' has no axis {axis} to batch on: its data has shape {:?}",
                    input.name,
                    array.shape()
                )));
            }
        }
        let mut bound = Vec::new();
        for ((input, array), axis) in inputs.iter().zip(&raw).zip(&axes) {
            bound.push(self.check(input, array, *axis)?);
        }
        // Inputs without a batch axis (a sample rate, a flag) go whole with every batch.
        let batched: Vec<(&ValueInfo, &Array, usize)> =
            inputs.iter().zip(&bound).zip(&axes).filter_map(|((i, a), ax)| Some((i, a, (*ax)?))).collect();
        let rows = batched.first().map_or(1, |(_, a, ax)| a.shape()[*ax]);
        for (input, a, axis) in &batched {
            if a.shape()[*axis] != rows {
                let (first, first_array, first_axis) = batched[0];
                return Err(self.err(format!(
                    "input '{}' has {} rows along its batch axis {axis}, '{}' has {} along axis {first_axis} \
                     (say which axis is the batch: option batch-axis NAME=AXIS)",
                    input.name,
                    a.shape()[*axis],
                    first.name,
                    first_array.shape()[first_axis]
                )));
            }
        }
        // A model exported with a fixed batch (`[1, 16, 96]`) takes that many rows at a time.
        let max_batch = batched
            .iter()
            .filter_map(|(input, _, axis)| match input.shape()?.get(*axis)? {
                Dim::Fixed(n) if *n > 0 && (*n as usize) < rows => Some(*n as usize),
                _ => None,
            })
            .min();
        let labels = match label_name {
            None => None,
            Some(l) => {
                let a = arrays[&l].to_i64().map_err(|e| self.err(format!("labels '{l}': {e}")))?;
                if a.shape().first() != Some(&rows) {
                    return Err(self.err(format!("labels '{l}' have shape {:?}, expected {rows} rows", a.shape())));
                }
                Some(a)
            }
        };
        Ok(Bound {
            names: inputs.iter().map(|i| i.name.clone()).collect(),
            columns: bound.into_iter().map(Column::Array).collect(),
            labels,
            rows,
            max_batch,
            axes,
            picked: None,
        })
    }

    /// The array cast to the input's type, if its shape fits the declared one
    /// (any size along the batch axis).
    fn check(&self, input: &ValueInfo, array: &Array, batch_axis: Option<usize>) -> Result<Array> {
        if let Some(shape) = input.shape() {
            let fits = shape.len() == array.shape().len()
                && shape.iter().zip(array.shape()).enumerate().all(|(i, (d, &a))| match d {
                    Dim::Fixed(n) => Some(i) == batch_axis || *n as usize == a,
                    _ => true,
                });
            if !fits {
                return Err(self.err(format!(
                    "input '{}' expects shape {}, the data has {:?}",
                    input.name,
                    show_dims(&shape),
                    array.shape()
                )));
            }
        }
        match input.dtype() {
            Some(dt) if self.exact && dt != array.dtype() => Err(self.err(format!(
                "input '{}' takes {dt}, the data given is {} (arrays built in a program are not converted)",
                input.name,
                array.dtype()
            ))),
            Some(dt) => array
                .cast(dt)
                .ok_or_else(|| self.err(format!("input '{}' expects {dt}, the data is {}", input.name, array.dtype()))),
            None => Ok(array.clone()),
        }
    }
}

fn names(arrays: &BTreeMap<String, Array>) -> String {
    arrays.keys().cloned().collect::<Vec<_>>().join(", ")
}

impl Bound {
    /// Consecutive batches of at most `size` rows: (first row, inputs). Images
    /// are decoded here, a batch at a time; a file that fails names itself.
    pub fn batches(&self, size: usize) -> impl Iterator<Item = Result<(usize, Vec<Array>)>> + '_ {
        self.batches_upto(size, self.rows)
    }

    /// [`Bound::batches`] over the first `limit` rows only.
    pub fn batches_upto(&self, size: usize, limit: usize) -> impl Iterator<Item = Result<(usize, Vec<Array>)>> + '_ {
        let size = self.batch_size(size);
        let limit = limit.min(self.rows);
        (0..limit).step_by(size).map(move |start| Ok((start, self.rows_of(start, (start + size).min(limit))?)))
    }

    /// `rows` rows spread evenly over the data (row i·total/rows), in batches of at most `size`
    /// (the first rows when that is all of them): what a judge of a few rows runs on, so that
    /// data ordered by class, length or source is represented — ppocr_cls's calibration lines
    /// the int8 model misreads most are its rows 19, 31 and 37, past the first 16.
    pub fn spread_batches(&self, size: usize, rows: usize) -> impl Iterator<Item = Result<Vec<Array>>> + '_ {
        let (size, rows) = (self.batch_size(size), rows.min(self.rows));
        let picked: Vec<usize> = (0..rows).map(|i| i * self.rows / rows).collect();
        let batches: Vec<Vec<usize>> = picked.chunks(size).map(<[usize]>::to_vec).collect();
        batches.into_iter().map(move |batch| self.rows_at(&batch))
    }

    /// A batch size within the one the model fixes.
    fn batch_size(&self, size: usize) -> usize {
        size.min(self.max_batch.unwrap_or(usize::MAX)).max(1)
    }

    /// Every input's rows `start..end` of this binding.
    fn rows_of(&self, start: usize, end: usize) -> Result<Vec<Array>> {
        match &self.picked {
            None => self.read_rows(start, end),
            Some(_) => self.rows_at(&(start..end).collect::<Vec<_>>()),
        }
    }

    /// Every input's rows `rows` of this binding, in that order: each run of consecutive rows of
    /// the columns sliced at once, the runs joined along the batch axis.
    fn rows_at(&self, rows: &[usize]) -> Result<Vec<Array>> {
        let read: Vec<usize> = rows.iter().map(|&r| self.picked.as_ref().map_or(r, |p| p[r])).collect();
        let mut runs: Vec<(usize, usize)> = vec![];
        for &r in &read {
            match runs.last_mut() {
                Some((_, end)) if *end == r => *end += 1,
                _ => runs.push((r, r + 1)),
            }
        }
        if let [(start, end)] = runs[..] {
            return self.read_rows(start, end);
        }
        let each: Vec<Vec<Array>> =
            runs.iter().map(|&(start, end)| self.read_rows(start, end)).collect::<Result<_>>()?;
        (0..self.columns.len())
            .map(|c| match self.axes[c] {
                Some(axis) => Array::concat_along(axis, &each.iter().map(|run| run[c].clone()).collect::<Vec<_>>()),
                None => Ok(each[0][c].clone()),
            })
            .collect()
    }

    /// Every input's rows `start..end` of the columns. Images are decoded here; a file that fails
    /// names itself.
    fn read_rows(&self, start: usize, end: usize) -> Result<Vec<Array>> {
        let slice = |(c, axis): (&Column, &Option<usize>)| match (c, axis) {
            (Column::Array(a), Some(axis)) => Ok(a.slice_along(*axis, start, end)),
            (Column::Array(a), None) => Ok(a.clone()),
            (Column::Images(feed, dtype), _) => {
                let rows = feed.rows(start, end)?;
                rows.cast(*dtype).ok_or_else(|| Error::Data(format!("images cannot become {dtype}")))
            }
        };
        self.columns.iter().zip(&self.axes).map(slice).collect()
    }

    /// The shape of one row of each input (1 along its batch axis).
    pub fn row_shapes(&self) -> Vec<Vec<usize>> {
        self.columns
            .iter()
            .zip(&self.axes)
            .map(|(c, axis)| match c {
                Column::Images(feed, _) => feed.row_shape(),
                Column::Array(a) => {
                    let mut shape = a.shape().to_vec();
                    if let Some(d) = axis.and_then(|ax| shape.get_mut(ax)) {
                        *d = 1;
                    }
                    shape
                }
            })
            .collect()
    }

    /// Each input's shape for `rows` rows, by name: [`Bound::row_shapes`] scaled along each batch
    /// axis (what tract's type analysis is given for a batch of that many rows).
    pub fn shapes_for_rows(&self, rows: usize) -> std::collections::BTreeMap<String, Vec<usize>> {
        let scaled = self.row_shapes().into_iter().zip(&self.axes).map(|(mut shape, axis)| {
            if let Some(d) = axis.and_then(|ax| shape.get_mut(ax)) {
                *d *= rows;
            }
            shape
        });
        self.names.iter().cloned().zip(scaled).collect()
    }

    /// Rows in `batch` (one of [`Bound::batches`]).
    pub fn rows_in(&self, batch: &[Array]) -> usize {
        batch.iter().zip(&self.axes).find_map(|(a, axis)| Some(a.shape()[(*axis)?])).unwrap_or(1)
    }
}

/// Dims as `1x3xNx320` for messages.
pub fn show_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => s.clone(),
            Dim::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DataType;
    use ndarray::ArrayD;

    fn input(name: &str) -> ValueInfo {
        ValueInfo::tensor(name, Some(DataType::FLOAT), Some(&[Dim::Symbolic("N".into()), Dim::Fixed(2)]))
    }

    fn arrays(rows: &[(&str, usize)]) -> BTreeMap<String, Array> {
        rows.iter()
            .map(|&(name, n)| {
                let a = match name {
                    "label" => Array::I64(ArrayD::from_shape_vec(vec![n], (0..n as i64).collect()).unwrap()),
                    _ => {
                        Array::F32(ArrayD::from_shape_vec(vec![n, 2], (0..2 * n).map(|v| v as f32).collect()).unwrap())
                    }
                };
                (name.to_string(), a)
            })
            .collect()
    }

    /// Row `r` of `a` and `label` (made by `arrays`) holds the values `2r, 2r+1` and the label `r`.
    #[test]
    fn some_rows_of_the_data_bind_as_data_of_their_own_in_their_order() {
        let data = Dataset::from_arrays("mem", arrays(&[("a", 9), ("label", 9)]));
        let view = data.rows(&[1, 2, 3, 6, 8, 0]).rows(&[0, 1, 2, 3, 4]);
        let bound = view.bind(&[input("a")], None).unwrap();
        assert_eq!(bound.rows, 5);
        assert_eq!(bound.labels.as_ref().unwrap().iter().copied().collect::<Vec<_>>(), [1, 2, 3, 6, 8]);
        let first = |b: &[Array]| b[0].to_f32().iter().step_by(2).map(|v| *v as usize / 2).collect::<Vec<_>>();
        let batches: Vec<Vec<usize>> = bound.batches(4).map(|b| first(&b.unwrap().1)).collect();
        assert_eq!(batches, [vec![1, 2, 3, 6], vec![8]], "runs 1..4 and 6 joined, in order");
        let spread: Vec<Vec<usize>> = bound.spread_batches(8, 3).map(|b| first(&b.unwrap())).collect();
        assert_eq!(spread, [vec![1, 2, 6]], "rows 0, 1 and 3 of the view");
        let e = data.rows(&[9]).bind(&[input("a")], None).expect_err("past the end").to_string();
        assert!(e.contains("mem") && e.contains("row 9") && e.contains("9 rows"), "{e}");
    }

    #[test]
    fn arrays_bind_by_name_with_labels_and_batch_in_order() {
        let data = Dataset::from_arrays("mem", arrays(&[("a", 7), ("b", 7), ("label", 7)]));
        let bound = data.bind(&[input("b"), input("a")], None).unwrap();
        assert_eq!(bound.rows, 7);
        assert_eq!(bound.labels.as_ref().unwrap().len(), 7);
        let batches: Vec<(usize, Vec<Array>)> = bound.batches(3).map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(|(start, b)| (*start, bound.rows_in(b))).collect::<Vec<_>>(),
            [(0, 3), (3, 3), (6, 1)]
        );
        // Inputs come in the model's order: b first.
        let last = batches[2].1[0].to_f32();
        assert_eq!(last.iter().copied().collect::<Vec<_>>(), vec![12.0, 13.0]);
    }

    /// A judge's few rows come from all over the data, batched; all rows are the plain batches.
    #[test]
    fn spread_batches_pick_rows_over_the_whole_data() {
        let data = Dataset::from_arrays("mem", arrays(&[("a", 10)]));
        let bound = data.bind(&[input("a")], None).unwrap();
        let first_column =
            |b: &Vec<Array>| b[0].to_f32().iter().step_by(2).map(|v| *v as usize / 2).collect::<Vec<_>>();
        let spread: Vec<Vec<usize>> = bound.spread_batches(3, 4).map(|b| first_column(&b.unwrap())).collect();
        assert_eq!(spread, [vec![0, 2, 5], vec![7]]);
        let all: Vec<Vec<usize>> = bound.spread_batches(4, 99).map(|b| first_column(&b.unwrap())).collect();
        assert_eq!(all, [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
    }

    /// A file's one array feeds a one-input model whatever its name, and int data a float input;
    /// arrays a program built must be named and typed as the inputs.
    #[test]
    fn exact_data_takes_no_other_name_and_no_cast() {
        let named_x = || Dataset::from_arrays("d", arrays(&[("x", 3)]));
        assert!(named_x().bind(&[input("a")], None).is_ok());
        let e = named_x().exact().bind(&[input("a")], None).unwrap_err().to_string();
        assert!(e.contains("no array for model input 'a'") && e.contains('x'), "{e}");
        let ints = || Dataset::from_arrays("d", BTreeMap::from([("a".into(), Array::I64(ArrayD::zeros(vec![3, 2])))]));
        assert!(ints().bind(&[input("a")], None).is_ok());
        let e = ints().exact().bind(&[input("a")], None).unwrap_err().to_string();
        assert!(e.contains("input 'a' takes float32, the data given is int64"), "{e}");
    }

    #[test]
    fn data_that_does_not_fit_is_named() {
        let missing = Dataset::from_arrays("d.npz", arrays(&[("a", 4)]));
        let e = missing.bind(&[input("a"), input("b")], None).unwrap_err().to_string();
        assert!(e.contains("'b'") && e.contains("d.npz"), "{e}");
        let uneven = Dataset::from_arrays("d.npz", arrays(&[("a", 4), ("b", 5)]));
        let e = uneven.bind(&[input("a"), input("b")], None).unwrap_err().to_string();
        assert!(e.contains("rows"), "{e}");
    }
}
