//! What this CPU does to int8 arithmetic in ONNX Runtime.

/// Whether ONNX Runtime's u8×s8 kernels can saturate on this CPU: x86 without
/// VNNI multiplies with `vpmaddubsw`, which adds pairs of products in 16 bits,
/// so full-range int8 weights against uint8 activations can overflow
/// (255·127·2 > 32767). 7-bit weights (`reduce_range`) cannot. CPUs with VNNI
/// and ARM's dot-product instructions accumulate in 32 bits.
pub fn int8_pairs_saturate() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !(std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
