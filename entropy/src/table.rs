//! Integer CDF tables and their `constriction` entropy models.
//!
//! Every distribution Ember codes with — the Gaussian conditional's scale tables and the
//! factorized prior's per-channel tables — ends up as one [`CdfTable`]: integer frequencies
//! summing to `2^PRECISION` over a contiguous run of symbol values plus one *escape* symbol.
//! Values outside the run are coded as the escape symbol followed by bypass bits (see
//! [`crate::coder`]), so no integer ever fails to code.

use std::num::NonZeroU32;

use constriction::stream::model::{DecoderModel, EncoderModel, EntropyModel};

use crate::PRECISION;

/// Total frequency of every table: `2^PRECISION`.
pub const TOTAL: u32 = 1 << PRECISION;

/// Bits of the decoder's lookup table: quantiles are bucketed by their top `LUT_BITS` bits.
const LUT_BITS: u32 = 10;
const LUT_SHIFT: u32 = PRECISION as u32 - LUT_BITS;

/// Errors from building or loading a table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("a table needs between 1 and 65535 regular symbols, got {0}")]
    BadSize(usize),
    #[error("table frequencies must each be at least 1 and sum to {TOTAL}")]
    BadFrequencies,
    #[error("serialized tables are truncated or malformed")]
    Malformed,
}

/// A quantized distribution over `offset .. offset + n` plus an escape symbol.
///
/// Symbol indices `0..n` stand for the values `offset..offset + n`; index `n` is the escape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdfTable {
    offset: i32,
    /// Cumulative frequencies, `n + 2` entries from 0 to [`TOTAL`].
    cdf: Box<[u32]>,
    /// `lut[b]` is the symbol index whose interval holds quantile `b << LUT_SHIFT`;
    /// `lut[2^LUT_BITS]` is the escape index. Bounds the decoder's search to one bucket.
    lut: Box<[u16]>,
}

impl CdfTable {
    /// Builds a table from non-negative masses: `masses[i]` for value `offset + i`, and
    /// `escape_mass` for everything outside. Masses are quantized with
    /// [`quantize_masses`], so the result is a pure function of the integers given.
    pub fn from_masses(
        offset: i32,
        masses: &[u128],
        escape_mass: u128,
    ) -> Result<Self, TableError> {
        if masses.is_empty() || masses.len() >= TOTAL as usize {
            return Err(TableError::BadSize(masses.len()));
        }
        let mut all = masses.to_vec();
        all.push(escape_mass);
        Self::from_frequencies(offset, &quantize_masses(&all))
    }

    /// Builds a table from floating-point probabilities, as evaluated from a trained density
    /// at export time. Only the resulting integers are stored with a model, so decoding never
    /// depends on how these floats were computed. Negative or non-finite entries count as 0.
    pub fn from_probabilities(
        offset: i32,
        probs: &[f64],
        escape_prob: f64,
    ) -> Result<Self, TableError> {
        // 2^60 keeps 52 significant bits of every probability; `as` saturates and maps NaN to 0.
        let to_mass = |p: f64| {
            if p.is_finite() && p > 0.0 {
                (p * (1u64 << 60) as f64) as u128
            } else {
                0
            }
        };
        let masses: Vec<u128> = probs.iter().map(|&p| to_mass(p)).collect();
        Self::from_masses(offset, &masses, to_mass(escape_prob))
    }

    /// Builds a table from explicit frequencies (`n` regular symbols, then the escape).
    pub fn from_frequencies(offset: i32, freqs: &[u32]) -> Result<Self, TableError> {
        if freqs.len() < 2 || freqs.len() > TOTAL as usize {
            return Err(TableError::BadSize(freqs.len().saturating_sub(1)));
        }
        if freqs.contains(&0)
            || freqs.iter().map(|&f| u64::from(f)).sum::<u64>() != u64::from(TOTAL)
        {
            return Err(TableError::BadFrequencies);
        }
        let mut cdf = Vec::with_capacity(freqs.len() + 1);
        let mut acc = 0u32;
        cdf.push(0);
        for &f in freqs {
            acc += f;
            cdf.push(acc);
        }
        let mut lut = Vec::with_capacity((1 << LUT_BITS) + 1);
        let mut sym = 0usize;
        for b in 0..1u32 << LUT_BITS {
            let q = b << LUT_SHIFT;
            while cdf[sym + 1] <= q {
                sym += 1;
            }
            lut.push(sym as u16);
        }
        lut.push((freqs.len() - 1) as u16);
        Ok(Self {
            offset,
            cdf: cdf.into(),
            lut: lut.into(),
        })
    }

    /// Value of symbol index 0.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Number of regular (non-escape) symbols; also the escape symbol's index.
    pub fn len(&self) -> u32 {
        (self.cdf.len() - 2) as u32
    }

    /// Always false: a table holds at least one regular symbol.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Frequency of symbol index `i` (the escape is index [`len`](Self::len)).
    pub fn frequency(&self, i: u32) -> u32 {
        self.cdf[i as usize + 1] - self.cdf[i as usize]
    }

    /// Ideal code length in bits of `value` under this table, escape bits included.
    pub fn cost_bits(&self, value: i32) -> f64 {
        let idx = i64::from(value) - i64::from(self.offset);
        let bits = |f: u32| f64::from(PRECISION as u32) - f64::from(f).log2();
        if (0..i64::from(self.len())).contains(&idx) {
            bits(self.frequency(idx as u32))
        } else {
            bits(self.frequency(self.len())) + crate::coder::escape_bits(self, value) as f64
        }
    }

    /// Appends the table's serialized form: offset (i32 LE), symbol count n (u16 LE), then
    /// the n + 1 frequencies as u16 LE (the escape's last). Frequencies are below 2^16 since
    /// every table has at least two symbols of frequency ≥ 1.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&(self.len() as u16).to_le_bytes());
        for i in 0..=self.len() {
            out.extend_from_slice(&(self.frequency(i) as u16).to_le_bytes());
        }
    }

    /// Reads one table written by [`write_to`](Self::write_to) from the front of `bytes`,
    /// returning it and the bytes after it. Validates everything; never panics.
    pub fn read_from(bytes: &[u8]) -> Result<(Self, &[u8]), TableError> {
        let (head, rest) = bytes.split_at_checked(6).ok_or(TableError::Malformed)?;
        let offset = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let n = usize::from(u16::from_le_bytes([head[4], head[5]]));
        let (body, rest) = rest
            .split_at_checked(2 * (n + 1))
            .ok_or(TableError::Malformed)?;
        let freqs: Vec<u32> = body
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        Ok((Self::from_frequencies(offset, &freqs)?, rest))
    }

    /// The entropy model for symbol indices `0..=len()` under this table.
    pub(crate) fn model(&self) -> TableModel<'_> {
        TableModel(self)
    }
}

/// Quantizes non-negative masses to frequencies that sum to [`TOTAL`], each at least 1.
///
/// Every entry first gets 1; the remaining `TOTAL − m` units are shared in proportion to the
/// masses (largest-remainder rounding, ties to the lower index). Integer-only, so it is
/// reproducible bit for bit. All-zero masses share the total evenly.
///
/// # Panics
/// If `masses` has more than `TOTAL` entries or is empty; callers check sizes first.
pub fn quantize_masses(masses: &[u128]) -> Vec<u32> {
    let m = masses.len();
    assert!(
        m > 0 && m <= TOTAL as usize,
        "cannot quantize {m} masses to {TOTAL}"
    );
    // Scale masses so that their sum fits comfortably: keep at most 96 bits each.
    let max = masses.iter().copied().max().unwrap_or(0);
    let shift = (128 - max.leading_zeros()).saturating_sub(96);
    let scaled: Vec<u128> = masses.iter().map(|&x| x >> shift).collect();
    let total: u128 = scaled.iter().sum();
    if total == 0 {
        let ones = vec![1u128; m];
        return quantize_masses(&ones);
    }
    let spare = u128::from(TOTAL) - m as u128;
    let mut freqs = Vec::with_capacity(m);
    let mut rems = Vec::with_capacity(m);
    let mut used = 0u128;
    for (i, &x) in scaled.iter().enumerate() {
        // x < 2^96 and spare < 2^16, so the product fits.
        let share = x * spare;
        freqs.push(1 + (share / total) as u32);
        rems.push((share % total, i));
        used += share / total;
    }
    let leftover = (spare - used) as usize;
    rems.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rems.iter().take(leftover) {
        freqs[i] += 1;
    }
    freqs
}

/// A [`CdfTable`] seen by constriction: symbols are table indices, the escape included.
#[derive(Clone, Copy)]
pub(crate) struct TableModel<'a>(&'a CdfTable);

impl EntropyModel<PRECISION> for TableModel<'_> {
    type Symbol = u32;
    type Probability = u32;
}

impl EncoderModel<PRECISION> for TableModel<'_> {
    #[inline(always)]
    fn left_cumulative_and_probability(
        &self,
        symbol: impl std::borrow::Borrow<u32>,
    ) -> Option<(u32, NonZeroU32)> {
        let s = *symbol.borrow() as usize;
        let cdf = &self.0.cdf;
        let (lo, hi) = (*cdf.get(s)?, *cdf.get(s + 1)?);
        Some((lo, NonZeroU32::new(hi - lo)?))
    }
}

impl DecoderModel<PRECISION> for TableModel<'_> {
    #[inline(always)]
    fn quantile_function(&self, quantile: u32) -> (u32, u32, NonZeroU32) {
        let cdf = &self.0.cdf;
        let bucket = (quantile >> LUT_SHIFT) as usize;
        // The symbol holding `quantile` lies in lut[bucket] ..= lut[bucket + 1].
        let (mut lo, mut hi) = (
            usize::from(self.0.lut[bucket]),
            usize::from(self.0.lut[bucket + 1]),
        );
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if cdf[mid] <= quantile {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let (left, right) = (cdf[lo], cdf[lo + 1]);
        // Frequencies are ≥ 1 by construction, so this never fails.
        (
            lo as u32,
            left,
            NonZeroU32::new(right - left).expect("zero frequency in a validated table"),
        )
    }
}

/// `k` uniformly distributed bits (1 ≤ k ≤ 16) as one constriction symbol: the escape path.
#[derive(Clone, Copy)]
pub(crate) struct BitsModel(pub u32);

impl EntropyModel<PRECISION> for BitsModel {
    type Symbol = u32;
    type Probability = u32;
}

impl EncoderModel<PRECISION> for BitsModel {
    #[inline]
    fn left_cumulative_and_probability(
        &self,
        symbol: impl std::borrow::Borrow<u32>,
    ) -> Option<(u32, NonZeroU32)> {
        let s = *symbol.borrow();
        let width = PRECISION as u32 - self.0;
        (s >> self.0 == 0).then(|| {
            (
                s << width,
                NonZeroU32::new(1 << width).expect("1 << width is never 0"),
            )
        })
    }
}

impl DecoderModel<PRECISION> for BitsModel {
    #[inline]
    fn quantile_function(&self, quantile: u32) -> (u32, u32, NonZeroU32) {
        let width = PRECISION as u32 - self.0;
        let s = quantile >> width;
        (
            s,
            s << width,
            NonZeroU32::new(1 << width).expect("1 << width is never 0"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_masses_sum_to_total_and_are_positive() {
        for masses in [
            vec![0u128, 0, 0],
            vec![1, 0, 1 << 100],
            vec![5; 1000],
            vec![u128::MAX; 7],
        ] {
            let f = quantize_masses(&masses);
            assert_eq!(f.iter().sum::<u32>(), TOTAL);
            assert!(f.iter().all(|&x| x >= 1));
        }
        // Masses 1:3 split the 65534 spare units 16383.5 : 49150.5; the tied half unit goes
        // to the lower index.
        assert_eq!(quantize_masses(&[1, 3]), vec![1 + 16384, 1 + 49150]);
    }

    #[test]
    fn decoder_inverts_encoder_for_every_quantile() {
        let t = CdfTable::from_frequencies(-2, &[1, 40_000, 25_000, 500, 35]).unwrap();
        for q in 0..TOTAL {
            let (s, left, p) = t.model().quantile_function(q);
            assert!(left <= q && q < left + p.get());
            assert_eq!(
                t.model().left_cumulative_and_probability(s),
                Some((left, p))
            );
        }
    }

    #[test]
    fn serialization_round_trips_and_rejects_garbage() {
        let t = CdfTable::from_probabilities(7, &[0.1, 0.5, 0.4], 1e-6).unwrap();
        let mut bytes = Vec::new();
        t.write_to(&mut bytes);
        let (back, rest) = CdfTable::read_from(&bytes).unwrap();
        assert_eq!(back, t);
        assert!(rest.is_empty());
        assert_eq!(
            CdfTable::read_from(&bytes[..bytes.len() - 1]),
            Err(TableError::Malformed)
        );
        let mut bad = bytes.clone();
        bad[6] ^= 1; // frequencies no longer sum to TOTAL
        assert_eq!(CdfTable::read_from(&bad), Err(TableError::BadFrequencies));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(
            CdfTable::from_masses(0, &[], 1),
            Err(TableError::BadSize(0))
        );
        assert_eq!(
            CdfTable::from_frequencies(0, &[TOTAL]),
            Err(TableError::BadSize(0))
        );
    }
}
