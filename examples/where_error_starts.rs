//! Quantize a model and show, layer by layer, where the quantization error starts:
//! every intermediate tensor both models share, in graph order, with its SQNR.
//!
//! ```text
//! cargo run --release --example where_error_starts -- demo/digits_cnn.onnx demo/digits_calib.npz
//! ```

use prunq::eval::compare_layers;
use prunq::measure::Silent;
use prunq::quant::{quantize, QuantConfig, QuantMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, calib] = args.as_slice() else {
        return Err("usage: where_error_starts MODEL.onnx CALIB.npz".into());
    };
    let original = prunq::onnx::load(model)?;
    let calib = prunq::data::Dataset::open(calib)?;
    let mut quantized = original.clone();
    // No float fallback, so the raw int8 error of every layer shows.
    let config = QuantConfig { mode: QuantMode::Static, target_sqnr: 0.0, ..Default::default() };
    quantize(&mut quantized, &config, Some(&calib), &Silent)?;
    let mut layers = compare_layers(&original, &quantized, &calib, &Default::default(), &Silent)?;
    layers.layers.sort_by_key(|l| l.position);
    println!("{:>8}  {:<20} tensor", "SQNR dB", "op");
    for l in &layers.layers {
        println!("{:>8.1}  {:<20} {}", l.sqnr_db, l.op_type, l.name);
    }
    match layers.first_below(20.0) {
        Some(l) => println!("error starts at '{}' ({}): {:.1} dB", l.name, l.op_type, l.sqnr_db),
        None => println!("every layer stays above 20 dB"),
    }
    Ok(())
}
