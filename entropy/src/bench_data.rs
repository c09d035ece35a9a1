//! Synthetic latents for benchmarks: what a trained model's coder sees.
//!
//! Scale indexes are skewed towards small scales (most channels of a trained model are nearly
//! deterministic), and each symbol is drawn from its own table by inverting the table's CDF at a
//! uniform quantile, so the symbol statistics match the model exactly.

use crate::gaussian::{GaussianTables, NUM_SCALES};
use crate::table::TOTAL;

/// `n` symbols and their scale indexes, reproducible from `seed`.
pub fn latents(n: usize, seed: u64) -> (Vec<i32>, Vec<u16>) {
    let tables = GaussianTables::shared().tables();
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut symbols = Vec::with_capacity(n);
    let mut indexes = Vec::with_capacity(n);
    for _ in 0..n {
        // Minimum of two uniforms: density falls linearly towards large scales.
        let index = (next() % NUM_SCALES as u64).min(next() % NUM_SCALES as u64) as u16;
        let table = &tables[usize::from(index)];
        let q = (next() % u64::from(TOTAL)) as u32;
        // Inverse CDF by a running sum: one pass over the table, not one sum per step.
        let mut sym = 0;
        let mut upper = table.frequency(0);
        while sym < table.len() && q >= upper {
            sym += 1;
            upper += table.frequency(sym);
        }
        let value = if sym == table.len() {
            table.offset() + table.len() as i32 + 5
        } else {
            table.offset() + sym as i32
        };
        symbols.push(value);
        indexes.push(index);
    }
    (symbols, indexes)
}

/// Measured single-thread throughput of [`crate::encode`] and [`crate::decode`] on
/// [`latents`]: `(encode symbols/s, decode symbols/s, bits per symbol)`, best of `rounds`.
pub fn throughput(n: usize, rounds: usize) -> (f64, f64, f64) {
    let tables = GaussianTables::shared().tables();
    let (symbols, indexes) = latents(n, 42);
    let mut best_enc = f64::INFINITY;
    let mut best_dec = f64::INFINITY;
    let mut bytes = Vec::new();
    for _ in 0..rounds.max(1) {
        let t = std::time::Instant::now();
        bytes = crate::encode(&symbols, &indexes, tables).expect("benchmark data is valid");
        best_enc = best_enc.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let back = crate::decode(&bytes, &indexes, tables).expect("benchmark stream decodes");
        best_dec = best_dec.min(t.elapsed().as_secs_f64());
        assert_eq!(back, symbols, "benchmark round trip failed");
    }
    (
        n as f64 / best_enc,
        n as f64 / best_dec,
        8.0 * bytes.len() as f64 / n as f64,
    )
}
