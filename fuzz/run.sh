#!/usr/bin/env bash
# Runs both fuzz targets side by side for $1 seconds each (default 1800), seeded
# with the shared models and data (copied: ../shared is read-only).
# Needs cargo-fuzz and a nightly toolchain: `cargo install cargo-fuzz`.
# Crashes land in fuzz/artifacts/<target>/; minimize them with
# `cargo +nightly fuzz tmin <target> <file>` and copy the result to
# tests/fuzz_regressions/<target>/ so `cargo test` keeps them fixed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-1800}
shared=${PRUNQ_SHARED:-../../shared}
mkdir -p corpus/load_model corpus/read_npz
for m in digits_mlp digits_cnn digits_resnet digits_vit ppocr_cls_v2; do
  cp "$shared/models/$m.onnx" corpus/load_model/ 2>/dev/null || true
done
cp "$shared"/data/digits_*.npz "$shared"/data/ocr_cls_calib.npz corpus/read_npz/ 2>/dev/null || true
chmod u+w corpus/*/* || true
cargo +nightly fuzz build -O
for target in load_model read_npz; do
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=4096 -timeout=60 \
    > "fuzz-$target.log" 2>&1 &
done
wait
for target in load_model read_npz; do
  echo "$target: $(grep -E '^#[0-9]+' "fuzz-$target.log" | tail -1)"
  ls "artifacts/$target" 2>/dev/null | sed 's/^/  crash: /' || true
done
