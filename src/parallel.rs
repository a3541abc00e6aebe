//! Work on several cores without giving up byte-identical output: items run
//! in parallel, results are always used in item order, so the thread count
//! never changes a result (`--threads`).

use crate::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads to use from now on (`--threads N`); 0 means every core.
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// The worker threads (`--threads`; default every core).
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// `f` over every item, on up to [`threads`] threads; results in item order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_upto(threads(), items, f)
}

/// Runs of a model that hold a runtime session each (its arena, its copy of
/// the weights) in flight at once, whatever `--threads`: memory stops
/// growing with the thread count there (ppocr_rec's static fallback: 1.58 GB
/// with 16 trials in flight, 1.29 GB with 8).
pub const MODEL_RUNS_IN_FLIGHT: usize = 8;

/// [`map`] on at most `width` threads.
pub fn map_upto<T: Sync, R: Send>(width: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = threads().min(width).min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()).expect("every item ran")).collect()
}

/// `a` and `b` at once when more than one thread may run.
pub fn join<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    if threads() <= 1 {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let b = s.spawn(b);
        let a = a();
        (a, b.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// Runs `run` on the inputs a window of [`threads`] at a time, in parallel,
/// and hands each result to `consume` in input order (batches of a data set:
/// statistics then accumulate exactly as in a sequential pass). The first
/// input that is an error (a file that fails to decode) stops the work.
pub fn ordered<I: Sync, O: Send>(
    inputs: impl Iterator<Item = Result<I>>,
    run: impl Fn(&I) -> Result<O> + Sync,
    consume: impl FnMut(I, O) -> Result<()>,
) -> Result<()> {
    ordered_upto(threads(), inputs, run, consume)
}

/// [`ordered`] with at most `width` inputs in flight (fewer than the threads
/// where each run holds a lot of memory).
pub fn ordered_upto<I: Sync, O: Send>(
    width: usize,
    inputs: impl Iterator<Item = Result<I>>,
    run: impl Fn(&I) -> Result<O> + Sync,
    mut consume: impl FnMut(I, O) -> Result<()>,
) -> Result<()> {
    let window = width.clamp(1, threads().max(1));
    let mut inputs = inputs.peekable();
    while inputs.peek().is_some() {
        let chunk = inputs.by_ref().take(window).collect::<Result<Vec<I>>>()?;
        let results = map(&chunk, &run);
        for (input, result) in chunk.into_iter().zip(results) {
            consume(input, result?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_item_order_whatever_the_threads() {
        let items: Vec<u64> = (0..100).collect();
        for n in [1, 2, 7] {
            set_threads(n);
            assert_eq!(map(&items, |x| x * x), items.iter().map(|x| x * x).collect::<Vec<_>>());
            let mut seen = vec![];
            ordered(
                items.iter().map(|x| Ok(*x)),
                |x| Ok(x + 1),
                |i, o| {
                    seen.push((i, o));
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(seen, items.iter().map(|&x| (x, x + 1)).collect::<Vec<_>>());
        }
        set_threads(0);
    }

    #[test]
    fn ordered_runs_hand_results_in_order_and_stop_at_the_first_bad_input() {
        set_threads(4);
        let inputs = (0..10).map(|i| if i == 6 { Err(crate::Error::Data("row 6".into())) } else { Ok(i) });
        let mut seen = vec![];
        let r = ordered_upto(
            2,
            inputs,
            |i| Ok(i * 10),
            |i, out| {
                seen.push((i, out));
                Ok(())
            },
        );
        assert!(r.unwrap_err().to_string().contains("row 6"));
        assert_eq!(seen, (0..6).map(|i| (i, i * 10)).collect::<Vec<_>>(), "every earlier input, in order");
        set_threads(0);
    }
}
