//! Resource limits for models from anywhere: a small file must not make prunq
//! (or tract, which folds constant subgraphs while loading) allocate without
//! bound. Constants are already bounded by the file (their bytes must be
//! there); what remains are ops that make big tensors from small constants.

use crate::ir::{Graph, Node};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// Default memory budget for one tensor made from constants: 8 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 8 << 30;

static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Sets the budget (bytes) for the rest of the process (`--memory-limit`).
pub fn set_memory_limit(bytes: u64) {
    MEMORY_LIMIT.store(bytes.max(1), Ordering::Relaxed);
}

/// The budget: as set, else `$PRUNQ_MEMORY_LIMIT` (bytes), else the default.
pub fn memory_limit() -> u64 {
    match MEMORY_LIMIT.load(Ordering::Relaxed) {
        0 => std::env::var("PRUNQ_MEMORY_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MEMORY_LIMIT),
        set => set,
    }
}

/// Refuses nodes that would make a tensor past the budget from constant
/// inputs (ConstantOfShape, Expand, Tile, Range), in the graph and its subgraphs.
pub fn check(graph: &Graph, budget: u64) -> Result<()> {
    for node in &graph.nodes {
        if let Some(elements) = claimed_elements(graph, node) {
            // 8 bytes: the widest element these ops make.
            if elements.saturating_mul(8) > budget {
                return Err(Error::Model(format!(
                    "node '{}' ({}) would make a tensor of {elements} elements, past the memory limit of {budget} bytes",
                    node.label(),
                    node.op_type
                )));
            }
        }
        for g in node.subgraphs() {
            check(g, budget)?;
        }
    }
    Ok(())
}

/// Elements of `node`'s output when constant inputs fix it (saturating).
fn claimed_elements(graph: &Graph, node: &Node) -> Option<u64> {
    let ints = |ix: usize| -> Option<Vec<i64>> { graph.constant(node.input(ix)?)?.ok()?.to_i64_vec().ok() };
    let product = |v: &[i64]| v.iter().fold(1u64, |acc, &d| acc.saturating_mul(d.max(0) as u64));
    let numel = |ix: usize| -> Option<u64> { Some(graph.constant(node.input(ix)?)?.ok()?.numel()? as u64) };
    match node.op_type.as_str() {
        "ConstantOfShape" => Some(product(&ints(0)?)),
        "Expand" => Some(product(&ints(1)?).max(numel(0).unwrap_or(1))),
        "Tile" => Some(numel(0)?.saturating_mul(product(&ints(1)?))),
        "Range" => {
            let scalar = |ix: usize| -> Option<f64> {
                graph.constant(node.input(ix)?)?.ok()?.to_f32().ok()?.iter().next().map(|v| *v as f64)
            };
            let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
            let n = ((limit - start) / delta).ceil();
            Some(if n.is_finite() && n > 0.0 { n.min(u64::MAX as f64) as u64 } else { 0 })
        }
        _ => None,
    }
}

/// `8G`, `512M`, `64K` or plain bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("'{s}' is not a size like 8G or 512M"))?;
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err(format!("'{s}': unknown unit '{unit}'")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_units_and_name_what_is_wrong() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size(" 64K "), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("8Q").unwrap_err().contains("unknown unit 'Q'"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("99999999999T").unwrap_err().contains("too large"));
    }
}
