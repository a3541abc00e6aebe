//! Data from files users have (image folders, text with a tokenizer), checked
//! against the shared `.npz` sets made from the same material in numpy.

mod common;

use ndarray::{ArrayD, Axis};
use prunq::data::{Array, DataOptions, Dataset, Preprocess};
use std::path::Path;
use std::process::Command;

const PPOCR_SPEC: &str = "resize=48x320,keep-aspect,pad=0,layout=NCHW,bgr,scale=1/255,mean=0.5,std=0.5";

use common::{os, prunq_quiet as prunq};

fn f32_array(path: &Path, name: &str) -> ArrayD<f32> {
    let mut arrays = prunq::data::npz::read(path).unwrap();
    arrays.remove(name).unwrap().to_f32()
}

/// Writes the text lines of `ocr_lines_calib.npz` back as the PNGs they were made
/// from: the pixels before PP-OCR's `(v/255 − 0.5)/0.5`, without the right padding,
/// channels saved as RGB from the tensor's BGR order (as cv2 reads them).
fn ocr_lines_as_pngs(dir: &Path) -> ArrayD<f32> {
    let x = f32_array(&common::data("ocr_lines_calib.npz"), "x");
    for (i, line) in x.axis_iter(Axis(0)).enumerate() {
        let padded = |col: usize| (0..3).all(|c| (0..48).all(|y| line[[c, y, col]] == 0.0));
        let width = (0..320).rev().find(|&col| !padded(col)).map_or(320, |c| c + 1) as u32;
        let image = image::RgbImage::from_fn(width, 48, |col, y| {
            let px = |c: usize| ((line[[c, y as usize, col as usize]] * 0.5 + 0.5) * 255.0).round() as u8;
            image::Rgb([px(2), px(1), px(0)])
        });
        image.save(dir.join(format!("line{i:03}.png"))).unwrap();
    }
    x
}

fn rows_of(data: &Dataset, model: &Path) -> ArrayD<f32> {
    let model = prunq::onnx::load(model).unwrap();
    let bound = data.bind(&prunq::runtime::feed_inputs(&model), None).unwrap();
    let parts: Vec<Array> = bound.batches(16).map(|b| b.unwrap().1.remove(0)).collect();
    Array::concat(&parts).unwrap().to_f32()
}

#[test]
fn png_text_lines_preprocessed_in_prunq_equal_the_npz_made_in_numpy() {
    let dir = common::tempdir();
    let lines = dir.path().join("lines");
    std::fs::create_dir(&lines).unwrap();
    let want = ocr_lines_as_pngs(&lines);
    let options = DataOptions { preprocess: Some(Preprocess::parse(PPOCR_SPEC).unwrap()), ..Default::default() };
    let data = Dataset::open_with(&lines, &options).unwrap();
    let got = rows_of(&data, &common::model("ppocr_rec_v4.onnx"));
    assert_eq!(got.shape(), want.shape());
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "largest difference {worst}");

    // The floor: calibrating from the PNG folder gives the same model, bit for bit, as from the npz.
    let out = |name: &str| dir.path().join(name);
    let model = common::model("ppocr_rec_v4.onnx");
    let run = |calib: &Path, o: &Path, spec: Option<&str>| {
        let mut args = vec![os("quantize"), model.as_os_str(), os("-o"), o.as_os_str(), os("--mode"), os("static")];
        args.extend([os("--target-sqnr"), os("0"), os("--no-latency-check"), os("--calib"), calib.as_os_str()]);
        if let Some(spec) = spec {
            args.extend([os("--preprocess"), os(spec)]);
        }
        let r = prunq(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    run(&lines, &out("png.onnx"), Some(PPOCR_SPEC));
    run(&common::data("ocr_lines_calib.npz"), &out("npz.onnx"), None);
    assert!(std::fs::read(out("png.onnx")).unwrap() == std::fs::read(out("npz.onnx")).unwrap());
}

#[test]
fn larger_images_are_resized_keeping_their_aspect_and_padded() {
    let dir = common::tempdir();
    let x = ocr_lines_as_pngs(dir.path());
    // Line 0 at twice the size (each pixel 2 × 2): resized back to height 48, then padded.
    let line0 = image::open(dir.path().join("line000.png")).unwrap();
    let (w, h) = (line0.width(), line0.height());
    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    line0.resize_exact(2 * w, 2 * h, image::imageops::FilterType::Nearest).save(big.join("a.png")).unwrap();
    let options = DataOptions { preprocess: Some(Preprocess::parse(PPOCR_SPEC).unwrap()), ..Default::default() };
    let got = rows_of(&Dataset::open_with(&big, &options).unwrap(), &common::model("ppocr_rec_v4.onnx"));
    assert_eq!(got.shape(), [1, 3, 48, 320]);
    let want = x.index_axis(Axis(0), 0);
    let mean_error = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).sum::<f32>() / want.len() as f32;
    assert!(mean_error < 0.05, "mean error {mean_error} after a 2× round trip");
    assert!(got.index_axis(Axis(0), 0).slice(ndarray::s![.., .., w as usize + 1..]).iter().all(|v| *v == 0.0));
}

#[test]
fn an_image_folder_with_class_subfolders_gives_labels_and_accuracy() {
    // digits_test as 8-bit grey PNGs in one folder per class: the CNN's accuracy from the
    // images (pixels rounded to 8 bits) is within a point of the npz's.
    let dir = common::tempdir();
    let test = common::data("digits_test.npz");
    let x = f32_array(&test, "input");
    let labels = prunq::data::npz::read(&test).unwrap().remove("label").unwrap().to_i64().unwrap();
    for (i, (img, label)) in x.axis_iter(Axis(0)).zip(labels.iter()).enumerate() {
        let class = dir.path().join(format!("{label}"));
        std::fs::create_dir_all(&class).unwrap();
        let gray = image::GrayImage::from_fn(16, 16, |c, r| {
            image::Luma([((img[[0, r as usize, c as usize]] + 1.0) / 2.0 * 255.0).round() as u8])
        });
        gray.save(class.join(format!("{i:03}.png"))).unwrap();
    }
    let model = common::model("digits_cnn.onnx");
    let eval = |data: &Path, spec: Option<&str>| {
        let mut args = vec![os("eval"), model.as_os_str(), os("--data"), data.as_os_str(), os("--json")];
        if let Some(spec) = spec {
            args.extend([os("--preprocess"), os(spec)]);
        }
        let r = prunq(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        serde_json::from_slice::<serde_json::Value>(&r.stdout).unwrap()["accuracy"].as_f64().unwrap()
    };
    let from_png = eval(dir.path(), Some("gray,scale=2/255,mean=1"));
    let from_npz = eval(&test, None);
    assert!((from_png - from_npz).abs() <= 0.01, "png {from_png} vs npz {from_npz}");
}

#[test]
fn sentences_with_the_tokenizer_write_the_same_bytes_as_the_npz() {
    let dir = common::tempdir();
    let text = std::fs::read_to_string(common::data("sentences.txt")).unwrap();
    let calib = dir.path().join("calib.txt");
    std::fs::write(&calib, text.lines().take(256).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let tokenizer = common::model("minilm_l6.tokenizer.json");
    let model = common::model("minilm_l6.onnx");
    let run = |data: &Path, o: &Path, text: bool| {
        let mut args = vec![os("quantize"), model.as_os_str(), os("-o"), o.as_os_str(), os("--mode"), os("static")];
        args.extend([os("--target-sqnr"), os("0"), os("--no-latency-check"), os("--calib"), data.as_os_str()]);
        if text {
            args.extend([os("--tokenizer"), tokenizer.as_os_str(), os("--max-len"), os("64")]);
        }
        let r = prunq(&args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    let (a, b) = (dir.path().join("text.onnx"), dir.path().join("npz.onnx"));
    run(&calib, &a, true);
    run(&common::data("sentences_calib.npz"), &b, false);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "text and npz calibration differ");
}

#[test]
fn bad_files_are_named() {
    let dir = common::tempdir();
    let folder = dir.path().join("imgs");
    std::fs::create_dir(&folder).unwrap();
    image::GrayImage::new(16, 16).save(folder.join("a.png")).unwrap();
    std::fs::write(folder.join("b.png"), b"not a png at all").unwrap();
    let model = common::model("digits_cnn.onnx");
    let r = prunq(&[os("eval"), model.as_os_str(), os("--data"), folder.as_os_str(), os("--preprocess"), os("gray")]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("b.png"), "{err}");

    // An image the model cannot take at its size, without a resize: named, with the fix.
    std::fs::remove_file(folder.join("b.png")).unwrap();
    image::GrayImage::new(20, 16).save(folder.join("b.png")).unwrap();
    let r = prunq(&[
        os("eval"),
        model.as_os_str(),
        os("--data"),
        folder.as_os_str(),
        os("--preprocess"),
        os("gray,crop=16x16"),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = prunq(&[
        os("eval"),
        model.as_os_str(),
        os("--data"),
        folder.as_os_str(),
        os("--preprocess"),
        os("gray,resize=8x8"),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("a.png") && err.contains("8×8") && err.contains("16×16"), "{err}");

    // Text without a tokenizer: a usage error.
    let txt = dir.path().join("s.txt");
    std::fs::write(&txt, "hello\n").unwrap();
    let minilm = common::model("minilm_l6.onnx");
    let r = prunq(&[os("eval"), minilm.as_os_str(), os("--data"), txt.as_os_str()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("tokenizer"), "{err}");
}

#[test]
fn wav_files_feed_a_keyword_spotter_in_frames_with_labels_from_folders() {
    let dir = common::tempdir();
    let corpus = dir.path().join("corpus");
    let made = Command::new(common::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/make.py"))
        .arg(&corpus)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let model = corpus.join("keyword.onnx");
    // Two classes of tones, 0.25 s each at 16 kHz: three frames of 1600 samples per file (the last padded).
    let wavs = dir.path().join("wavs");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut written = Vec::new();
    for (class, freq) in [("high", 3000.0f32), ("low", 300.0)] {
        std::fs::create_dir_all(wavs.join(class)).unwrap();
        for k in 0..2 {
            let samples: Vec<i16> = (0..4000)
                .map(|i| ((i as f32 / 16000.0 * freq * std::f32::consts::TAU + k as f32).sin() * 16000.0) as i16)
                .collect();
            let mut w = hound::WavWriter::create(wavs.join(class).join(format!("{k}.wav")), spec).unwrap();
            samples.iter().for_each(|s| w.write_sample(*s).unwrap());
            w.finalize().unwrap();
            written.push(samples);
        }
    }
    let data = Dataset::open_with(&wavs, &DataOptions { sample_rate: Some(16000), ..Default::default() }).unwrap();
    let m = prunq::onnx::load(&model).unwrap();
    let bound = data.bind(&prunq::runtime::feed_inputs(&m), None).unwrap();
    assert_eq!(bound.rows, 12);
    assert_eq!(
        bound.labels.as_ref().unwrap().iter().copied().collect::<Vec<_>>(),
        [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    );
    let (_, batch) = bound.batches(12).next().unwrap().unwrap();
    let frames = batch[0].to_f32();
    assert_eq!(frames.shape(), [12, 1, 1600]);
    let second_file: Vec<f32> = frames.slice(ndarray::s![3..6, 0, ..]).iter().copied().collect();
    let want: Vec<f32> =
        written[1].iter().map(|s| *s as f32 / 32768.0).chain(std::iter::repeat(0.0)).take(4800).collect();
    assert_eq!(second_file, want);

    // The whole path from the command line: static quantization calibrated on the WAV files,
    // then evaluated on them (labels from the folders).
    let out = dir.path().join("q.onnx");
    let r = prunq(&[
        os("quantize"),
        model.as_os_str(),
        os("-o"),
        out.as_os_str(),
        os("--mode"),
        os("static"),
        os("--calib"),
        wavs.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = prunq(&[
        os("eval"),
        out.as_os_str(),
        os("--data"),
        wavs.as_os_str(),
        os("--sample-rate"),
        os("16000"),
        os("--json"),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["samples"], 12);
    assert!(report["accuracy"].is_number());
    let r = prunq(&[os("eval"), out.as_os_str(), os("--data"), wavs.as_os_str(), os("--sample-rate"), os("8000")]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("0.wav") && err.contains("16000 Hz") && err.contains("8000 Hz"), "{err}");
}
