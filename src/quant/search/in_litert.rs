//! The fallback's choice checked where a `.tflite` output runs: ONNX Runtime ranks the groups
//! (one simulated session for all of them), LiteRT has the last word on how many stay float.
//! LiteRT's int8 kernels round differently from ONNX Runtime's, and the converter computes a
//! float-kept FULLY_CONNECTED from its int8 weights (dynamic range), so a set that meets the
//! target in one may miss it in the other.

use super::sensitivity::{noisiest, readmit};
use crate::data::{Array, Bound};
use crate::ir::Model;
use crate::measure::{Noise, Reference};
use crate::runtime::{feed_inputs, Session};
use crate::Result;
use std::collections::BTreeMap;

/// Candidates judged as their `.tflite`, in LiteRT, at batch 1, against the float model's
/// outputs on rows spread over the calibration data.
pub struct InLiteRt {
    reference: Reference,
    inputs: Vec<String>,
    options: crate::litert::ConvertOptions,
    /// Rows judged on.
    pub rows: usize,
}

impl InLiteRt {
    /// A judge on `rows` rows spread over `bound` (`data` sizes the conversion's open
    /// dimensions), against `float_model`'s outputs.
    pub fn new(
        model: &Model,
        float_model: &Session,
        bound: &Bound,
        data: &crate::data::Dataset,
        rows: usize,
    ) -> Result<InLiteRt> {
        let batches: Vec<Vec<Array>> = bound.spread_batches(1, rows).collect::<Result<_>>()?;
        let rows = batches.len();
        Ok(InLiteRt {
            reference: Reference::new(float_model, batches)?,
            inputs: feed_inputs(model).into_iter().map(|v| v.name).collect(),
            options: crate::litert::sizes_from_data(model, Some(data), &Default::default())?,
            rows,
        })
    }

    /// `candidate`'s output noise as its `.tflite` runs in LiteRT.
    pub fn noise(&self, candidate: &Model) -> Result<Noise> {
        let bytes = crate::litert::convert(candidate, &self.options)?.bytes;
        self.reference.noise(&Session::litert(bytes, Some(&self.inputs), &Default::default())?, None)
    }
}

/// The float groups for a LiteRT output, from `kept` (what the summed estimate keeps float):
/// while the `.tflite` misses `budget`, more groups fall back, noisiest next (by `noise` per `cost`), twice
/// as many each time and within `max_cost`; once it meets the budget, float groups are tried
/// back in int8 as [`super::sensitivity`]'s re-admission does, judged in LiteRT. Returns the
/// groups and the `.tflite`'s noise with them float. `measure(float groups)` is the LiteRT
/// noise against the budget.
pub fn checked_in_litert(
    kept: Vec<usize>,
    noise: &[f64],
    cost: &[f64],
    max_cost: f64,
    budget: f64,
    measure: &mut dyn FnMut(&[usize]) -> Result<f64>,
) -> Result<(Vec<usize>, f64)> {
    let order = noisiest(noise, cost);
    // Each set is measured once (the re-admission starts by measuring the set it is given).
    let mut seen: BTreeMap<Vec<usize>, f64> = BTreeMap::new();
    let mut cached = |float: &[usize]| -> Result<f64> {
        let mut key = float.to_vec();
        key.sort_unstable();
        if let Some(&n) = seen.get(&key) {
            return Ok(n);
        }
        let n = measure(float)?;
        seen.insert(key, n);
        Ok(n)
    };
    let mut float = kept;
    let mut now = cached(&float)?;
    let mut step = 1;
    while now > budget {
        let spent: f64 = float.iter().map(|&g| cost[g]).sum();
        let more: Vec<usize> = order.iter().copied().filter(|g| !float.contains(g)).take(step).collect();
        if more.is_empty() || spent + more.iter().map(|&g| cost[g]).sum::<f64>() > max_cost {
            break;
        }
        float.extend(more);
        now = cached(&float)?;
        step *= 2;
    }
    if now <= budget && !float.is_empty() {
        float = readmit(float, noise, cost, budget, &mut cached)?;
        now = cached(&float)?;
    }
    Ok((float, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOISE: &[f64] = &[0.5, 0.05, 0.3, 0.01];

    /// Noise of a float set: each group adds its noise when int8.
    fn summed(float: &[usize]) -> Result<f64> {
        Ok((0..NOISE.len()).filter(|g| !float.contains(g)).map(|g| NOISE[g]).sum())
    }

    #[test]
    fn groups_fall_back_in_litert_until_the_budget_is_met() {
        // The estimate kept nothing float; LiteRT needs the two noisiest out: one more, then
        // two more, then the re-admission takes back the overshoot.
        let (float, n) = checked_in_litert(vec![], NOISE, &[1.0; 4], 4.0, 0.1, &mut summed).unwrap();
        assert_eq!(float, vec![0, 2]);
        assert!(n <= 0.1, "{n}");
    }

    #[test]
    fn the_cost_cap_stops_the_growth_and_the_miss_is_returned() {
        let (float, n) = checked_in_litert(vec![], NOISE, &[1.0; 4], 1.0, 0.1, &mut summed).unwrap();
        assert_eq!(float, vec![0]);
        assert!(n > 0.1, "the miss is reported, not hidden: {n}");
    }

    #[test]
    fn a_met_budget_goes_to_the_readmission_and_each_set_is_measured_once() {
        let mut runs = 0;
        let mut counting = |f: &[usize]| {
            runs += 1;
            summed(f)
        };
        let (float, _) = checked_in_litert(vec![0, 2], NOISE, &[1.0; 4], 4.0, 0.4, &mut counting).unwrap();
        assert_eq!(float, vec![0], "group 2 comes back in int8, group 0 cannot");
        assert_eq!(runs, 3, "{{0, 2}} once (cached for the re-admission), then {{0}} and {{}}");
    }
}
