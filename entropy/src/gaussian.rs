//! The Gaussian conditional: one [`CdfTable`] per entry of a fixed, log-spaced scale table.
//!
//! A latent `y` with predicted mean `μ` and scale `σ` is coded as the integer
//! `round(y − μ)` under a zero-mean Gaussian of scale `σ` discretized to unit bins. Tables
//! exist only for [`NUM_SCALES`] scales; `σ` is mapped to the smallest tabulated scale not
//! below it ([`GaussianTables::index_for_scale`]), by integer comparison on Q16 scales
//! produced by the deterministic entropy path, so encoder and decoder always agree.
//!
//! Everything here is integer arithmetic: the scale table is a fixed-point geometric
//! sequence and the CDF comes from [`crate::fixed`], so the tables are identical on every
//! platform (pinned by a checksum test).

use crate::fixed::{ONE, half_phi_q80};
use crate::table::CdfTable;

/// Number of tabulated scales (as in CompressAI: 64, log-spaced from 0.11 to 256).
pub const NUM_SCALES: usize = 64;
/// Fractional bits of the Q16 scales used at the entropy-model boundary.
pub const SCALE_FRAC_BITS: u32 = 16;
/// Smallest tabulated scale, 0.11, in Q16 (round(0.11 · 2^16)).
const SCALE_MIN_Q16: u64 = 7_209;
/// Ratio between successive scales, (256 / 0.11)^(1/63), in Q32.
const SCALE_RATIO_Q32: u64 = 4_857_377_777;
/// z with 2·(1 − Φ(z)) = 1e-9 (6.10941), in Q16: tables cover ±ceil(z·σ), and the tail mass
/// beyond goes to the escape symbol.
const TAIL_Z_Q16: u64 = 400_386;

/// The tabulated scales in Q16: `s[0] = 0.11`, `s[i] = round(s[i-1] · ratio)`, ending near 256.
pub fn scale_table_q16() -> [u32; NUM_SCALES] {
    let mut s = [0u32; NUM_SCALES];
    let mut cur = SCALE_MIN_Q16;
    for slot in &mut s {
        *slot = cur as u32;
        cur = (cur * SCALE_RATIO_Q32 + (1 << 31)) >> 32;
    }
    s
}

/// The Gaussian conditional's tables, one per tabulated scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaussianTables {
    scales_q16: [u32; NUM_SCALES],
    tables: Vec<CdfTable>,
}

impl GaussianTables {
    /// Builds all [`NUM_SCALES`] tables (a few milliseconds; done once per process through
    /// [`GaussianTables::shared`]).
    pub fn build() -> Self {
        let scales_q16 = scale_table_q16();
        let tables = scales_q16
            .iter()
            .map(|&s| table_for_scale(u64::from(s)))
            .collect();
        Self { scales_q16, tables }
    }

    /// Process-wide instance, built on first use.
    pub fn shared() -> &'static Self {
        static TABLES: std::sync::OnceLock<GaussianTables> = std::sync::OnceLock::new();
        TABLES.get_or_init(Self::build)
    }

    /// The tables, indexed by scale index.
    pub fn tables(&self) -> &[CdfTable] {
        &self.tables
    }

    /// The tabulated scales in Q16.
    pub fn scales_q16(&self) -> &[u32; NUM_SCALES] {
        &self.scales_q16
    }

    /// Index of the tabulated scale nearest to `scale_q16` in the log domain: the number of
    /// geometric midpoints `sqrt(s[i]·s[i+1])` strictly below it, compared exactly as
    /// `scale² > s[i]·s[i+1]` in integers. Measured on Kodak with an early model, this codes
    /// 3% smaller than always taking the next larger scale (CompressAI's rule) and brings the
    /// real size within 1% of the model's estimate.
    pub fn index_for_scale(&self, scale_q16: u32) -> u8 {
        let s = &self.scales_q16;
        let sq = u64::from(scale_q16).pow(2);
        (0..NUM_SCALES - 1)
            .filter(|&i| sq > u64::from(s[i]) * u64::from(s[i + 1]))
            .count() as u8
    }

    /// CRC32 of all tables in their serialized form; pinned by a test so that any change to
    /// the construction, however small, is noticed before it breaks old streams.
    pub fn checksum(&self) -> u32 {
        let mut bytes = Vec::new();
        for t in &self.tables {
            t.write_to(&mut bytes);
        }
        crc32fast::hash(&bytes)
    }
}

/// The discretized zero-mean Gaussian of scale `s / 2^16` over `−r..=r`, `r = ceil(z·σ)`.
fn table_for_scale(scale_q16: u64) -> CdfTable {
    let r = (scale_q16 * TAIL_Z_Q16).div_ceil(1 << (2 * SCALE_FRAC_BITS));
    // h[j] = Φ((j + ½)/σ) − ½ = Φ((2j+1)·2^15 / s) − ½ for j = 0..=r.
    let h: Vec<u128> = (0..=r)
        .map(|j| half_phi_q80((2 * j + 1) << (SCALE_FRAC_BITS - 1), scale_q16))
        .collect();
    let mut masses = Vec::with_capacity(2 * r as usize + 1);
    masses.extend((1..=r as usize).rev().map(|k| h[k] - h[k - 1]));
    masses.push(2 * h[0]);
    masses.extend((1..=r as usize).map(|k| h[k] - h[k - 1]));
    let escape = ONE - 2 * h[r as usize];
    CdfTable::from_masses(-(r as i32), &masses, escape)
        .expect("Gaussian tables have 3..=3200 symbols")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_table_spans_compressai_range() {
        let s = scale_table_q16();
        assert_eq!(s[0], 7_209);
        let last = f64::from(s[NUM_SCALES - 1]) / 65536.0;
        assert!((last - 256.0).abs() < 0.05, "last scale {last}");
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }

    /// Any change to the construction changes this value; old streams would then no longer
    /// decode. Update it only together with a new bitstream version.
    #[test]
    fn table_checksum_is_pinned() {
        assert_eq!(GaussianTables::shared().checksum(), 975_121_874);
    }

    #[test]
    fn tables_are_symmetric_and_peaked() {
        for t in GaussianTables::shared().tables() {
            let n = t.len();
            assert_eq!(t.offset(), -((n as i32 - 1) / 2));
            for i in 0..n / 2 {
                // Symmetric up to largest-remainder tie-breaking (one unit).
                assert!(t.frequency(i).abs_diff(t.frequency(n - 1 - i)) <= 1);
                assert!(t.frequency(i) <= t.frequency(i + 1) + 1);
            }
        }
    }

    #[test]
    fn scale_index_picks_the_nearest_scale_in_log_domain() {
        let g = GaussianTables::shared();
        let s = g.scales_q16();
        assert_eq!(g.index_for_scale(0), 0);
        assert_eq!(g.index_for_scale(s[0]), 0);
        assert_eq!(g.index_for_scale(s[0] + 1), 0);
        assert_eq!(g.index_for_scale(s[10]), 10);
        let mid = ((f64::from(s[0]) * f64::from(s[1])).sqrt()) as u32;
        assert_eq!(g.index_for_scale(mid), 0);
        assert_eq!(g.index_for_scale(mid + 1), 1);
        assert_eq!(g.index_for_scale(s[NUM_SCALES - 1]), (NUM_SCALES - 1) as u8);
        assert_eq!(g.index_for_scale(u32::MAX), (NUM_SCALES - 1) as u8);
    }

    #[test]
    fn small_scale_puts_almost_all_mass_on_zero() {
        let t = &GaussianTables::shared().tables()[0];
        assert_eq!(t.len(), 3);
        // P(0) for σ = 0.11 is 1 − 5.6e-6: within a few units of the total.
        assert!(
            t.frequency(1) > crate::table::TOTAL - 6,
            "{}",
            t.frequency(1)
        );
    }
}
