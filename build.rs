//! Generates the ONNX protobuf types from `proto/onnx.proto` with prost.
//! protox parses the .proto in pure Rust, so no `protoc` binary is needed.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"]).expect("proto/onnx.proto parses");
    prost_build::Config::new()
        // Weights are the bulk of a model: keep them as `bytes::Bytes` so decoding
        // from a shared buffer slices instead of copying.
        .bytes([".onnx.TensorProto.raw_data"])
        .compile_fds(fds)
        .expect("prost generates the ONNX types");
}
