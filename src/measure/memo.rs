//! Measurements made once per process. `optimize` quantizes one prepared model
//! many times — at several fallback targets, after rewrites that leave a layer
//! as it was — and every static run measures each layer group's sensitivity
//! and times its op groups. Those depend only on the models and data measured,
//! so they are kept under the models' fingerprints ([`crate::ir::fingerprint`])
//! and the data's, and measured once: a sensitivity measured again gives the
//! same numbers (runs are deterministic), so reusing it changes no byte; a
//! timing measured again could differ, so reusing it also keeps the candidates
//! of one search consistent with each other.

use crate::data::Array;
use crate::Result;
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// More entries than this and the memo starts again (entries are small; this
/// only bounds a long-lived library user's memory).
const CAPACITY: usize = 1024;

/// Values measured under a key.
pub struct Memo<V> {
    entries: Mutex<BTreeMap<u64, V>>,
}

impl<V: Clone> Default for Memo<V> {
    fn default() -> Self {
        Memo::new()
    }
}

impl<V: Clone> Memo<V> {
    /// An empty memo (for a `static`).
    pub const fn new() -> Self {
        Memo { entries: Mutex::new(BTreeMap::new()) }
    }

    /// The value kept under `key`, or `measure()`'s, kept. The lock is not held
    /// while measuring (measurements run in parallel and take seconds).
    pub fn get_or_measure(&self, key: u64, measure: impl FnOnce() -> Result<V>) -> Result<V> {
        if let Some(v) = self.lock().get(&key) {
            return Ok(v.clone());
        }
        let v = measure()?;
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, v.clone());
        Ok(v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, V>> {
        // A panic elsewhere cannot leave a half-written entry: insertion is one call.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One key from several parts (fingerprints, node lists, labels), e.g. a tuple.
pub fn key(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A fingerprint of batches of input arrays.
pub fn batches_fingerprint(batches: &[Vec<Array>]) -> u64 {
    let mut h = DefaultHasher::new();
    batches.iter().for_each(|b| hash_batch(b, &mut h));
    h.finish()
}

fn hash_batch(batch: &[Array], h: &mut DefaultHasher) {
    batch.len().hash(h);
    batch.iter().for_each(|a| a.hash_into(h));
}

/// A fingerprint of the first `rows` rows of bound data, read in batches of
/// `batch` (one batch held at a time).
pub fn bound_fingerprint(bound: &crate::data::Bound, batch: usize, rows: usize) -> Result<u64> {
    let mut h = DefaultHasher::new();
    for b in bound.batches_upto(batch, rows) {
        hash_batch(&b?.1, &mut h);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_measured_once_per_key_and_errors_are_not_kept() {
        let memo: Memo<u32> = Memo::new();
        let calls = std::cell::Cell::new(0);
        let measure = || {
            calls.set(calls.get() + 1);
            Ok(7)
        };
        assert_eq!(memo.get_or_measure(1, measure).unwrap(), 7);
        assert_eq!(memo.get_or_measure(1, || unreachable!()).unwrap(), 7);
        assert_eq!(calls.get(), 1);
        assert!(memo.get_or_measure(2, || Err(crate::Error::Usage("no".into()))).is_err());
        assert_eq!(memo.get_or_measure(2, || Ok(3)).unwrap(), 3);
        assert_eq!(key((1, "x")), key((1, "x")));
        assert_ne!(key((1, "x")), key((2, "x")));
    }
}
