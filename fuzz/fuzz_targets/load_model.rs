//! Any bytes as an ONNX model: decode, convert to the IR, validate, and what
//! `inspect` and `inspect --groups` compute. Errors are fine; panics, hangs
//! and runaway allocations are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prunq_fuzz_hook();
    let Ok(model) = prunq::onnx::decode(data.to_vec()) else { return };
    if let Ok(summary) = prunq::analysis::summarize(&model, &Default::default(), Some(data.len() as u64)) {
        let _ = prunq::report::text::summary(&summary);
    }
    let _ = prunq::prune::structured::channel_groups(&mut model.clone(), &Default::default());
    let _ = prunq::onnx::encode(&model);
});

/// libFuzzer's hook aborts on any panic; prunq's own hook lets the panics it
/// catches around tract become errors (an uncaught one still aborts).
fn prunq_fuzz_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let abort = std::panic::take_hook();
        prunq::runtime::remember_panics();
        let remember = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            remember(info);
            if !prunq::runtime::inside_guard() {
                abort(info);
            }
        }));
    });
}
