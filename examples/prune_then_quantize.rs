//! Prune then quantize in one recipe, check the result against the original
//! on held-out data and write it only when it agrees: the library's whole loop in one program.
//!
//! ```text
//! cargo run --release --example prune_then_quantize -- \
//!     demo/digits_cnn.onnx demo/digits_calib.npz demo/digits_test.npz /tmp/digits_small.onnx
//! ```

use prunq::eval::compare;
use prunq::measure::Silent;
use prunq::optimize::{apply, Recipe};

/// The steps, as `prunq optimize --save-recipe` writes them (options left out take their defaults).
const RECIPE: &str = r#"
[[step]]
kind = "prune"
structured = true
target-macs = 0.5

[[step]]
kind = "quantize"
mode = "static"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, calib, test, out] = args.as_slice() else {
        return Err("usage: prune_then_quantize MODEL.onnx CALIB.npz TEST.npz OUT.onnx".into());
    };
    let original = prunq::onnx::load(model)?;
    let calib = prunq::data::Dataset::open(calib)?;
    let test = prunq::data::Dataset::open(test)?;
    let recipe = Recipe::from_toml(RECIPE, "the example's recipe")?;
    let mut small = original.clone();
    apply(&mut small, &recipe, Some(&calib), &Silent)?;
    println!("applied: {}", recipe.label());
    let checked = compare(&original, &small, &test, &Default::default(), &Silent)?;
    for o in &checked.outputs {
        println!("{}: top-1 agreement {:.1} %, SQNR {:.1} dB", o.name, 100.0 * o.top1_agreement, o.sqnr_db);
    }
    // This program's budget: the smaller model must agree with the original on 98 % of the test rows.
    if checked.outputs.iter().any(|o| o.top1_agreement < 0.98) {
        return Err("the result agrees with the original on fewer than 98 % of rows; nothing written".into());
    }
    prunq::onnx::save(&small, out, &Default::default())?;
    println!("wrote {out}");
    Ok(())
}
