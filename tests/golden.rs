//! What prunq writes, byte for byte: every command's output on the shared
//! models is pinned by its SHA-256 in `tests/golden/<CPU class>.sha256`, so a
//! restructuring that changes a single byte of any output fails here.
//!
//! Pinned per CPU class: commands that calibrate run the model in ONNX Runtime,
//! whose float kernels differ between AVX2 and AVX-512 in the last bits, and
//! those bits reach the written scales (measured: ten of the 27 digests differ
//! between the two). A class without a file fails; a command not pinned for this
//! class is listed, and the pinned ones must match.
//!
//! After an intended change of output, rewrite this class's digests with
//! `PRUNQ_BLESS=1 cargo test --release --test golden`, remove the changed lines
//! from the other classes' files (they cannot be re-pinned on this machine) and
//! say why in the commit.
//! `PRUNQ_GOLDEN_EXE=path` runs another build of prunq (to pin a baseline).
//! Static quantization runs with `--no-latency-check`: its other choices rest
//! on timings, which no digest can pin. Static and dynamic name `--weight-type
//! int8`: their default weight type depends on the CPU (uint8 on x86 without VNNI).

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The digests' folder; one file per CPU class.
const DIGESTS: &str = "tests/golden";

/// The class of float kernels ONNX Runtime (and tract) pick on this CPU.
fn cpu_class() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
            return "x86_64-avx512".into();
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "x86_64-avx2".into();
        }
    }
    std::env::consts::ARCH.into()
}

/// `(model, command and options)`; `{calib}` is the model's calibration data.
const CASES: &[(&str, &str)] = &[
    ("digits_mlp", "quantize --mode weights"),
    ("digits_mlp", "quantize --mode static --calib {calib} --no-latency-check --weight-type int8"),
    ("digits_mlp", "prune --method sparsegpt --sparsity 0.5 --calib {calib}"),
    ("digits_mlp", "prune --structured --ratio 0.3"),
    ("digits_cnn", "quantize --mode weights --bits 4"),
    ("digits_cnn", "quantize --mode weights --codebook 16 --calib {calib}"),
    ("digits_cnn", "quantize --mode weights --algorithm gptq --calib {calib}"),
    ("digits_cnn", "quantize --mode dynamic --weight-type int8"),
    ("digits_cnn", "quantize --mode static --calib {calib} --no-latency-check --weight-type int8"),
    ("digits_cnn", "quantize --mode fp16 --calib {calib}"),
    ("digits_cnn", "prune --method wanda --sparsity 0.5 --pattern 2:4 --calib {calib}"),
    ("digits_cnn", "prune --structured --target-macs 0.5 --calib {calib}"),
    ("digits_resnet", "quantize --mode static --calib {calib} --no-latency-check --bias-correction --weight-type int8"),
    ("digits_resnet", "prune --structured --ratio 0.3 --calib {calib}"),
    ("digits_vit", "quantize --mode dynamic --weight-type int8"),
    ("digits_vit", "quantize --mode static --calib {calib} --no-latency-check --smooth 0.5 --weight-type int8"),
    ("digits_vit", "quantize --mode fp16"),
    ("ppocr_cls_v2", "quantize --mode static --calib {calib} --no-latency-check --weight-type int8"),
    ("ppocr_cls_v2", "prune --structured --ratio 0.2 --calib {calib}"),
    ("ppocr_cls_v2", "prune --method magnitude --sparsity 0.5 --sparse-storage"),
    ("ppocr_rec_v4", "quantize --mode weights"),
    ("ppocr_rec_v4", "quantize --mode static --calib {calib} --no-latency-check --target-sqnr 0 --weight-type int8"),
    ("ppocr_rec_v4", "quantize --mode fp16 --calib {calib}"),
    ("minilm_l6", "quantize --mode weights --bits 4 --block-size 32"),
    ("minilm_l6", "quantize --mode dynamic --weight-type int8"),
    ("minilm_l6", "quantize --mode static --calib {calib} --no-latency-check --target-sqnr 0 --weight-type int8"),
    ("minilm_l6", "prune --method sparsegpt --sparsity 0.5 --calib {calib}"),
];

fn calib_for(model: &str) -> PathBuf {
    data(match model {
        m if m.starts_with("digits") => "digits_calib.npz",
        "ppocr_cls_v2" => "ocr_cls_calib.npz",
        "ppocr_rec_v4" => "ocr_lines_calib.npz",
        _ => "sentences_calib.npz",
    })
}

/// Runs one case and returns the SHA-256 of the file it wrote.
fn digest(dir: &Path, model: &str, command: &str) -> String {
    let exe = std::env::var_os("PRUNQ_GOLDEN_EXE").unwrap_or_else(|| env!("CARGO_BIN_EXE_prunq").into());
    let out = dir.join("out.onnx");
    let calib = calib_for(model);
    let mut words = command.split(' ').map(|w| if w == "{calib}" { calib.as_os_str() } else { os(w) });
    let verb = words.next().expect("a command");
    let input = common::model(&format!("{model}.onnx"));
    let r = Command::new(exe)
        .args([os("-q"), verb, input.as_os_str(), os("-o"), out.as_os_str()])
        .args(words)
        .args(["--threads", "2"])
        .env("VIRTUAL_ENV", python().parent().and_then(Path::parent).expect("venv"))
        .output()
        .expect("prunq runs");
    assert!(r.status.success(), "{model}: {command}: {}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).expect("output written");
    std::fs::remove_file(&out).expect("output removed");
    format!("{:x}", Sha256::digest(&bytes))
}

fn key(model: &str, command: &str) -> String {
    format!("{model}: {command}")
}

#[test]
fn every_command_writes_the_pinned_bytes() {
    let class = cpu_class();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIGESTS).join(format!("{class}.sha256"));
    let blessing = std::env::var_os("PRUNQ_BLESS").is_some();
    let text = std::fs::read_to_string(&path);
    assert!(
        blessing || text.is_ok(),
        "no digests pinned for CPU class {class} ({}): pin them with PRUNQ_BLESS=1 on a build whose outputs are known good",
        path.display()
    );
    let pinned: BTreeMap<String, String> = text
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(d, k)| (k.to_string(), d.to_string())))
        .collect();
    let dir = tempdir();
    let mut got = Vec::new();
    for (model, command) in CASES {
        got.push((key(model, command), digest(dir.path(), model, command)));
    }
    if blessing {
        let text: String = got.iter().map(|(k, d)| format!("{d}  {k}\n")).collect();
        std::fs::write(&path, text).expect("digests written");
        return;
    }
    let unpinned: Vec<&str> = got.iter().filter(|(k, _)| !pinned.contains_key(k)).map(|(k, _)| k.as_str()).collect();
    if !unpinned.is_empty() {
        eprintln!("not pinned for {class} (changed on another CPU class since):\n{}", unpinned.join("\n"));
    }
    assert!(unpinned.len() < got.len(), "nothing pinned for {class}");
    let changed: Vec<&str> =
        got.iter().filter(|(k, d)| pinned.get(k).is_some_and(|p| p != d)).map(|(k, _)| k.as_str()).collect();
    assert!(changed.is_empty(), "outputs changed on {class} for:\n{}", changed.join("\n"));
}
