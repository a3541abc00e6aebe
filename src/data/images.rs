//! A folder of images (PNG, JPEG, BMP, WebP) as data: subfolder names are
//! labels (the ImageFolder convention), files are decoded a batch at a time by
//! the `image` crate and preprocessed to the model input's layout.

use super::preprocess::{Filter, Layout, Preprocess, Resize};
use super::Array;
use crate::ir::{Dim, ValueInfo};
use crate::{Error, Result};
use image::imageops::FilterType;
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The images of a folder (or one image file), in a fixed order.
#[derive(Clone, Debug)]
pub struct ImageFiles {
    pub files: Vec<PathBuf>,
    /// Each file's class: the index of its subfolder among the sorted names of
    /// the subfolders that hold images.
    pub labels: Option<Vec<i64>>,
}

impl ImageFiles {
    /// Images directly in `path`, or in its subfolders (one class each); sorted by name.
    pub fn list(path: &Path) -> Result<ImageFiles> {
        if path.is_file() {
            return Ok(ImageFiles { files: vec![path.to_path_buf()], labels: None });
        }
        let (dirs, files) = entries(path)?;
        let images: Vec<PathBuf> = files.into_iter().filter(|f| is_image(f)).collect();
        if !images.is_empty() || dirs.is_empty() {
            if images.is_empty() {
                return Err(Error::Data(format!(
                    "{}: no images ({}) in this folder",
                    path.display(),
                    EXTENSIONS.join(", ")
                )));
            }
            return Ok(ImageFiles { files: images, labels: None });
        }
        let (mut all, mut labels, mut classes) = (Vec::new(), Vec::new(), 0);
        for dir in dirs {
            let images: Vec<PathBuf> = entries(&dir)?.1.into_iter().filter(|f| is_image(f)).collect();
            if images.is_empty() {
                continue;
            }
            labels.extend(std::iter::repeat_n(classes, images.len()));
            classes += 1;
            all.extend(images);
        }
        if all.is_empty() {
            return Err(Error::Data(format!("{}: no images in this folder or its subfolders", path.display())));
        }
        Ok(ImageFiles { files: all, labels: Some(labels) })
    }

    /// The header of every file is read now (a file that is no image fails here, named);
    /// pixels are decoded later, a batch at a time.
    pub fn check_headers(&self) -> Result<()> {
        for f in &self.files {
            reader(f)?.into_dimensions().map_err(|e| decode_error(f, e))?;
        }
        Ok(())
    }
}

/// Subfolders and files of `dir`, each sorted by name.
pub(super) fn entries(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            dirs.push(path)
        } else {
            files.push(path)
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))
}

fn decode_error(path: &Path, e: image::ImageError) -> Error {
    Error::Data(format!("{}: cannot decode the image ({e})", path.display()))
}

/// The images of a folder made into one model input, rows on demand.
#[derive(Debug)]
pub struct ImageFeed {
    files: Vec<PathBuf>,
    spec: Preprocess,
    layout: Layout,
    channels: usize,
    /// The input's fixed height and width, where it fixes them.
    fixed: (Option<u32>, Option<u32>),
    /// Height and width of every row (from the first image when the model leaves them open).
    size: (u32, u32),
}

impl ImageFeed {
    /// How `files` become `input` (rank 4): layout, channels and size from the
    /// spec, else from the input's fixed dims.
    pub fn new(files: &ImageFiles, spec: &Preprocess, input: &ValueInfo) -> Result<ImageFeed> {
        let shape = input.shape().unwrap_or_default();
        if !shape.is_empty() && shape.len() != 4 {
            return Err(Error::Data(format!(
                "input '{}' has {} dims: images feed inputs of 4 dims (NCHW or NHWC)",
                input.name,
                shape.len()
            )));
        }
        let fixed = |i: usize| match shape.get(i) {
            Some(Dim::Fixed(n)) if *n > 0 => Some(*n as usize),
            _ => None,
        };
        let is_channels = |i: usize| matches!(fixed(i), Some(1 | 3));
        let layout = spec.layout.unwrap_or(if !is_channels(1) && is_channels(3) { Layout::Nhwc } else { Layout::Nchw });
        let (c, h, w) = match layout {
            Layout::Nchw => (1, 2, 3),
            Layout::Nhwc => (3, 1, 2),
        };
        let channels = match spec.gray {
            Some(true) => 1,
            _ => fixed(c).unwrap_or(3),
        };
        if channels != 1 && channels != 3 {
            return Err(Error::Data(format!(
                "input '{}' takes {channels} channels along axis {c}: images give 1 or 3 (set layout=NCHW or NHWC)",
                input.name
            )));
        }
        spec.check_channels(channels)?;
        let fixed = (fixed(h).map(|v| v as u32), fixed(w).map(|v| v as u32));
        let mut feed =
            ImageFeed { files: files.files.clone(), spec: spec.clone(), layout, channels, fixed, size: (0, 0) };
        let first = &files.files[0];
        let (w0, h0) = reader(first)?.into_dimensions().map_err(|e| decode_error(first, e))?;
        feed.size = feed.output_size(first, h0, w0)?;
        Ok(feed)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// The shape of one row, batch axis first with 1.
    pub fn row_shape(&self) -> Vec<usize> {
        let (h, w) = (self.size.0 as usize, self.size.1 as usize);
        match self.layout {
            Layout::Nchw => vec![1, self.channels, h, w],
            Layout::Nhwc => vec![1, h, w, self.channels],
        }
    }

    /// Rows `start..end`, decoded and preprocessed.
    pub fn rows(&self, start: usize, end: usize) -> Result<Array> {
        let mut shape = self.row_shape();
        shape[0] = end - start;
        let per_row: usize = shape[1..].iter().product();
        let mut data = vec![self.spec.pad; per_row * (end - start)];
        for (row, file) in data.chunks_mut(per_row).zip(&self.files[start..end]) {
            self.fill(file, row)?;
        }
        Ok(Array::F32(ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| Error::Data(e.to_string()))?))
    }

    /// Height and width an image of h0 × w0 ends as; a model input of fixed size must get it.
    fn output_size(&self, file: &Path, h0: u32, w0: u32) -> Result<(u32, u32)> {
        let (h, w) = self.resized(h0, w0);
        let (h, w) = match (self.spec.crop, self.spec.keep_aspect, &self.spec.resize) {
            (Some(crop), _, _) => crop,
            (None, true, Some(Resize::Exact(th, tw))) => (*th, *tw),
            (None, true, _) => (self.fixed.0.unwrap_or(h), self.fixed.1.unwrap_or(w)),
            _ => (h, w),
        };
        let fits = |want: Option<u32>, got: u32| want.is_none_or(|v| v == got);
        if !fits(self.fixed.0, h) || !fits(self.fixed.1, w) {
            return Err(Error::Data(format!(
                "{}: the image becomes {h}×{w} but the model takes {}×{} (say resize=HxW in the preprocess option)",
                file.display(),
                self.fixed.0.map_or("any".into(), |v| v.to_string()),
                self.fixed.1.map_or("any".into(), |v| v.to_string())
            )));
        }
        Ok((h, w))
    }

    /// The size an h0 × w0 image is resized to (before cropping and padding).
    fn resized(&self, h0: u32, w0: u32) -> (u32, u32) {
        let target = match &self.spec.resize {
            Some(Resize::Exact(h, w)) => Some((*h, *w)),
            Some(Resize::Shorter(s)) => {
                let r = *s as f64 / h0.min(w0) as f64;
                return ((h0 as f64 * r).round() as u32, (w0 as f64 * r).round() as u32);
            }
            None if self.spec.crop.is_none() => self.fixed.0.zip(self.fixed.1),
            None => None,
        };
        match target {
            None => (h0, w0),
            Some((h, w)) if !self.spec.keep_aspect => (h, w),
            // Fit inside h × w; the long side is rounded up, as PP-OCR's resize does.
            Some((h, w)) if h as f64 / h0 as f64 <= w as f64 / w0 as f64 => {
                (h, ((w0 as f64 * h as f64 / h0 as f64).ceil() as u32).clamp(1, w))
            }
            Some((h, w)) => (((h0 as f64 * w as f64 / w0 as f64).ceil() as u32).clamp(1, h), w),
        }
    }

    fn fill(&self, file: &Path, out: &mut [f32]) -> Result<()> {
        let image = reader(file)?.decode().map_err(|e| decode_error(file, e))?;
        let (h0, w0) = (image.height(), image.width());
        let size = self.output_size(file, h0, w0)?;
        if size != self.size {
            return Err(Error::Data(format!(
                "{}: the image becomes {}×{}, the first one {}×{} (say resize=HxW in the preprocess option)",
                file.display(),
                size.0,
                size.1,
                self.size.0,
                self.size.1
            )));
        }
        let (rh, rw) = self.resized(h0, w0);
        let image = if (rh, rw) != (h0, w0) { image.resize_exact(rw, rh, filter(self.spec.filter)) } else { image };
        let image = match self.spec.crop {
            Some((ch, cw)) if ch <= rh && cw <= rw => image.crop_imm((rw - cw) / 2, (rh - ch) / 2, cw, ch),
            Some((ch, cw)) => {
                return Err(Error::Data(format!(
                    "{}: the crop {ch}×{cw} is larger than the resized image {rh}×{rw}",
                    file.display()
                )))
            }
            None => image,
        };
        let (pixels, c) = match self.channels {
            1 => (image.to_luma8().into_raw(), 1),
            _ => (image.to_rgb8().into_raw(), 3),
        };
        let (h, w) = (self.size.0 as usize, self.size.1 as usize);
        let (ih, iw) = (image.height() as usize, image.width() as usize);
        for y in 0..ih.min(h) {
            for x in 0..iw.min(w) {
                for k in 0..c {
                    let source = if self.spec.bgr { c - 1 - k } else { k };
                    let value = self.spec.normalise(pixels[(y * iw + x) * c + source], k);
                    let at = match self.layout {
                        Layout::Nchw => (k * h + y) * w + x,
                        Layout::Nhwc => (y * w + x) * c + k,
                    };
                    out[at] = value;
                }
            }
        }
        Ok(())
    }
}

fn filter(f: Filter) -> FilterType {
    match f {
        Filter::Nearest => FilterType::Nearest,
        Filter::Bilinear => FilterType::Triangle,
        Filter::Bicubic => FilterType::CatmullRom,
        Filter::Lanczos => FilterType::Lanczos3,
    }
}
