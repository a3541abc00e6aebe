//! Any bytes as an `.npz` archive (and as a lone `.npy`): errors are fine,
//! panics and runaway allocations are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = prunq::data::npz::read_bytes(data, "fuzz.npz");
    let _ = prunq::data::npy::parse(data, "fuzz.npy");
});
