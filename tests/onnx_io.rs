//! ONNX in and out: lossless round trips, external data, bad files.

mod common;

use prunq::onnx;

#[test]
fn every_shared_model_round_trips_byte_identical() {
    let dir = common::tempdir();
    for name in common::ALL_MODELS {
        let input = common::model(name);
        let model = onnx::load(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = dir.path().join(name);
        onnx::save(&model, &out, &Default::default()).unwrap();
        let (a, b) = (std::fs::read(&input).unwrap(), std::fs::read(&out).unwrap());
        assert_eq!(a.len(), b.len(), "{name}: size differs");
        assert!(a == b, "{name}: bytes differ");
    }
}
