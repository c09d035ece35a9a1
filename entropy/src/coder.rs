//! Batched entropy coding of integer symbols with per-symbol tables, through constriction's
//! ANS coder (`AnsCoder<u32, u64>`, 16-bit probabilities).
//!
//! A call codes a whole tensor: `symbols[i]` under `tables[indexes[i]]`; an [`Encoder`] puts
//! several such tensors (parts) into one stream, which a [`Decoder`] reads back part by part.
//! Values inside a
//! table's range cost `−log2 p` bits; values outside are coded as the table's escape symbol
//! followed by a sign bit, a 6-bit length `L` and the `L` low bits of `|excess| + 1`
//! (Elias-gamma style, in 16-bit uniform chunks), so every `i32` codes.
//!
//! The stream is the ANS coder's words in little-endian byte order. ANS cannot detect every
//! corruption, but decoding checks that exactly the encoder's initial state is reached at the
//! end, which rejects most damaged streams; the container's CRC catches the rest.

use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};

use crate::PRECISION;
use crate::table::{BitsModel, CdfTable};

/// Errors from [`encode`] and [`decode`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodingError {
    #[error("{symbols} symbols but {indexes} table indexes")]
    LengthMismatch { symbols: usize, indexes: usize },
    #[error("table index {index} out of range ({tables} tables)")]
    BadIndex { index: u16, tables: usize },
    #[error("entropy-coded data is corrupt ({0})")]
    Corrupt(&'static str),
}

/// Bits of the escape length field: lengths 1..=33 of `|excess| + 1` fit in 6 bits.
const LENGTH_BITS: u32 = 6;
/// Largest bypass chunk the 16-bit models can carry.
const CHUNK_BITS: u32 = PRECISION as u32;

/// One elementary coding step of a symbol.
#[derive(Clone, Copy)]
enum Step {
    Symbol(u32),
    Bits { value: u32, width: u32 },
}

/// The steps that code `value` under `table`, in decoding order (at most 5).
fn steps(table: &CdfTable, value: i32) -> ([Step; 5], usize) {
    let mut out = [Step::Symbol(0); 5];
    let n = i64::from(table.len());
    let idx = i64::from(value) - i64::from(table.offset());
    if (0..n).contains(&idx) {
        out[0] = Step::Symbol(idx as u32);
        return (out, 1);
    }
    let (negative, excess) = if idx < 0 { (1, -idx - 1) } else { (0, idx - n) };
    let w = excess as u64 + 1; // < 2^33
    let len = 64 - w.leading_zeros(); // 1..=33
    out[0] = Step::Symbol(n as u32);
    out[1] = Step::Bits {
        value: negative,
        width: 1,
    };
    out[2] = Step::Bits {
        value: len - 1,
        width: LENGTH_BITS,
    };
    let mut used = 3;
    // The len − 1 bits below the leading one, high chunk first.
    let mut remaining = len - 1;
    while remaining > 0 {
        let width = remaining.min(CHUNK_BITS);
        remaining -= width;
        out[used] = Step::Bits {
            value: ((w >> remaining) & ((1 << width) - 1)) as u32,
            width,
        };
        used += 1;
    }
    (out, used)
}

/// Extra bits an escaped `value` costs beyond the escape symbol itself (0 if in range).
pub fn escape_bits(table: &CdfTable, value: i32) -> u32 {
    let (steps, used) = steps(table, value);
    steps[..used]
        .iter()
        .map(|s| {
            if let Step::Bits { width, .. } = s {
                *width
            } else {
                0
            }
        })
        .sum()
}

fn check_args(n_symbols: usize, indexes: &[u16], tables: &[CdfTable]) -> Result<(), CodingError> {
    if n_symbols != indexes.len() {
        return Err(CodingError::LengthMismatch {
            symbols: n_symbols,
            indexes: indexes.len(),
        });
    }
    if let Some(&index) = indexes.iter().find(|&&i| usize::from(i) >= tables.len()) {
        return Err(CodingError::BadIndex {
            index,
            tables: tables.len(),
        });
    }
    Ok(())
}

/// Codes `symbols[i]` under `tables[indexes[i]]` into a byte stream: an [`Encoder`] with one
/// part.
pub fn encode(
    symbols: &[i32],
    indexes: &[u16],
    tables: &[CdfTable],
) -> Result<Vec<u8>, CodingError> {
    let mut encoder = Encoder::new();
    encoder.push(symbols, indexes, tables)?;
    Ok(encoder.finish())
}

/// Decodes `indexes.len()` symbols coded by [`encode`] with the same indexes and tables.
///
/// Never panics and never allocates more than `indexes.len()` symbols, whatever `bytes` holds.
pub fn decode(bytes: &[u8], indexes: &[u16], tables: &[CdfTable]) -> Result<Vec<i32>, CodingError> {
    let mut decoder = Decoder::new(bytes)?;
    let mut out = Vec::with_capacity(indexes.len());
    decoder.decode_into(indexes, tables, &mut out)?;
    decoder.finish()?;
    Ok(out)
}

/// One stream holding several parts, each a tensor of symbols under its own table set (the
/// hyper-latent under the factorized tables, then the latent's passes under the Gaussian ones).
///
/// Why one stream: every ANS stream ends with the coder's final state (a few bytes, in whole
/// 32-bit words), and a container that frames separate streams needs a length for each; a
/// single stream pays both once. The decoder can still interleave its own work between parts (a part's tables may
/// depend on the symbols of the parts before it), because parts decode in the order they were
/// pushed.
#[derive(Default)]
pub struct Encoder<'t> {
    parts: Vec<(Vec<i32>, Vec<u16>, &'t [CdfTable])>,
}

impl<'t> Encoder<'t> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a part: `symbols[i]` under `tables[indexes[i]]`, decoded after the parts
    /// pushed before it.
    pub fn push(
        &mut self,
        symbols: &[i32],
        indexes: &[u16],
        tables: &'t [CdfTable],
    ) -> Result<(), CodingError> {
        check_args(symbols.len(), indexes, tables)?;
        self.parts
            .push((symbols.to_vec(), indexes.to_vec(), tables));
        Ok(())
    }

    /// The coded stream: the ANS coder's words in little-endian byte order.
    pub fn finish(self) -> Vec<u8> {
        let mut coder = DefaultAnsCoder::new();
        let bug = |_| unreachable!("check_args validated every table index");
        // ANS is a stack: push the last part's last symbol first, so that decoding runs
        // forwards through the parts in their order.
        for (symbols, indexes, tables) in self.parts.iter().rev() {
            for (&value, &index) in symbols.iter().zip(indexes).rev() {
                let table = &tables[usize::from(index)];
                let (steps, used) = steps(table, value);
                for step in steps[..used].iter().rev() {
                    match *step {
                        Step::Symbol(s) => {
                            coder.encode_symbol(s, table.model()).unwrap_or_else(bug)
                        }
                        Step::Bits { value, width } => coder
                            .encode_symbol(value, BitsModel(width))
                            .unwrap_or_else(bug),
                    }
                }
            }
        }
        let words = coder.into_compressed().unwrap_or_else(|e| match e {});
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

/// Fewest bits that any symbol coded under one of `tables` costs, or 0 when the tables give
/// no useful bound: `−log2(f_max / 2^16)` less the ANS state's rounding (under 2^-16 relative,
/// ≈ 2.3e-5 bits).
pub fn min_symbol_bits(tables: &[CdfTable]) -> f64 {
    let Some(fmax) = tables
        .iter()
        .flat_map(|t| (0..=t.len()).map(move |i| t.frequency(i)))
        .max()
    else {
        return 0.0;
    };
    let bits = f64::from(PRECISION as u32) - f64::from(fmax).log2() - 2.3e-5;
    if bits <= 1e-6 { 0.0 } else { bits }
}

/// Bits that `bytes` of coded data can account for: its own bits, plus the coder's final state
/// (at most 64 bits; 96 allowed, for margin).
fn available_bits(bytes: usize) -> f64 {
    8.0 * bytes as f64 + 96.0
}

/// Whether `bytes` of data coded by an [`Encoder`] can hold the `parts`, each a symbol count
/// and the tables its symbols use.
///
/// Why: a stream's header claims the image size, and the decoder allocates latent maps of
/// that size before it can tell whether the payload really holds that many symbols. Every
/// symbol costs at least [`min_symbol_bits`] of its tables, so a payload too short for its
/// claimed symbols can be rejected before anything is allocated.
pub fn can_hold(bytes: usize, parts: &[(u64, &[CdfTable])]) -> bool {
    let needed: f64 = parts
        .iter()
        .map(|&(count, tables)| count as f64 * min_symbol_bits(tables))
        .sum();
    needed <= available_bits(bytes)
}

/// Reads the parts of a stream written by an [`Encoder`] (or [`encode`]), in order.
///
/// Never panics, and never decodes more symbols than the bytes can hold: each part's symbols
/// are counted against the payload's size (see [`can_hold`]) before any is decoded.
pub struct Decoder {
    coder: DefaultAnsCoder,
    available: f64,
    committed: f64,
}

impl Decoder {
    pub fn new(bytes: &[u8]) -> Result<Self, CodingError> {
        if !bytes.len().is_multiple_of(4) {
            return Err(CodingError::Corrupt(
                "length is not a whole number of 32-bit words",
            ));
        }
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let coder = DefaultAnsCoder::from_compressed(words)
            .map_err(|_| CodingError::Corrupt("ends in a zero word"))?;
        Ok(Self {
            coder,
            available: available_bits(bytes.len()),
            committed: 0.0,
        })
    }

    /// Decodes the next part, `indexes.len()` symbols, appending them to `out`.
    pub fn decode_into(
        &mut self,
        indexes: &[u16],
        tables: &[CdfTable],
        out: &mut Vec<i32>,
    ) -> Result<(), CodingError> {
        check_args(indexes.len(), indexes, tables)?;
        self.committed += indexes.len() as f64 * min_symbol_bits(tables);
        if self.committed > self.available {
            return Err(CodingError::Corrupt(
                "too little data for the symbols it should hold",
            ));
        }
        out.reserve(indexes.len());
        let coder = &mut self.coder;
        let infallible = |e: constriction::CoderError<_, _>| -> CodingError { match e {} };
        for &index in indexes {
            let table = &tables[usize::from(index)];
            let s = coder.decode_symbol(table.model()).map_err(infallible)?;
            let n = table.len();
            if s < n {
                out.push(table.offset() + s as i32);
                continue;
            }
            let mut bits = |width: u32| coder.decode_symbol(BitsModel(width)).map_err(infallible);
            let negative = bits(1)? == 1;
            let len = bits(LENGTH_BITS)? + 1;
            if len > 33 {
                return Err(CodingError::Corrupt("escape length out of range"));
            }
            let mut w: u64 = 1;
            let mut remaining = len - 1;
            while remaining > 0 {
                let width = remaining.min(CHUNK_BITS);
                remaining -= width;
                w = (w << width) | u64::from(bits(width)?);
            }
            let excess = (w - 1) as i64;
            let idx = if negative {
                -excess - 1
            } else {
                i64::from(n) + excess
            };
            let value = i32::try_from(i64::from(table.offset()) + idx)
                .map_err(|_| CodingError::Corrupt("escaped value outside i32"))?;
            out.push(value);
        }
        Ok(())
    }

    /// Checks that the stream ended exactly after the last part: the coder is back at the
    /// encoder's initial state, with no data left.
    pub fn finish(self) -> Result<(), CodingError> {
        if self.coder.is_empty() {
            Ok(())
        } else {
            Err(CodingError::Corrupt("data left over after the last symbol"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gaussian::GaussianTables;
    use proptest::prelude::*;

    fn gauss() -> &'static [CdfTable] {
        GaussianTables::shared().tables()
    }

    /// A deterministic pseudo-random stream (xorshift) for tests without a rand dependency.
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    #[test]
    fn every_table_round_trips_its_whole_range_and_beyond() {
        for (i, t) in gauss().iter().enumerate() {
            let lo = t.offset() - 3;
            let hi = t.offset() + t.len() as i32 + 3;
            let symbols: Vec<i32> = (lo..hi).collect();
            let indexes = vec![i as u16; symbols.len()];
            let bytes = encode(&symbols, &indexes, gauss()).unwrap();
            assert_eq!(
                decode(&bytes, &indexes, gauss()).unwrap(),
                symbols,
                "table {i}"
            );
        }
    }

    #[test]
    fn random_symbols_round_trip_under_every_table() {
        let mut rng = xorshift(7);
        let n = 20_000;
        let indexes: Vec<u16> = (0..n).map(|_| (rng() % 64) as u16).collect();
        let symbols: Vec<i32> = indexes
            .iter()
            .map(|&i| {
                let spread = 2 * gauss()[i as usize].len() as u64;
                (rng() % spread) as i32 - spread as i32 / 2
            })
            .collect();
        let bytes = encode(&symbols, &indexes, gauss()).unwrap();
        assert_eq!(decode(&bytes, &indexes, gauss()).unwrap(), symbols);
    }

    #[test]
    fn extreme_values_escape() {
        let symbols = [1_000_000, -1_000_000, i32::MAX, i32::MIN, 0, 4, -4];
        let indexes = [0u16, 63, 0, 63, 5, 0, 0];
        let bytes = encode(&symbols, &indexes, gauss()).unwrap();
        assert_eq!(decode(&bytes, &indexes, gauss()).unwrap(), symbols);
        // Escape cost: sign + length + 19 bits for ~1e6.
        let t = &gauss()[0];
        assert_eq!(escape_bits(t, 1_000_000), 1 + 6 + 19);
        assert_eq!(escape_bits(t, 0), 0);
    }

    /// The cheapest possible stream — millions of the most probable symbol of the sharpest
    /// table — still decodes (the size bound never rejects a real stream), while the same
    /// symbol count claimed of a short payload is rejected up front.
    #[test]
    fn payload_size_bounds_the_symbol_count() {
        let tables = &gauss()[..1];
        let mode = (0..tables[0].len())
            .max_by_key(|&i| tables[0].frequency(i))
            .unwrap() as i32
            + tables[0].offset();
        let n = 10_000_000;
        let (symbols, indexes) = (vec![mode; n], vec![0u16; n]);
        let bytes = encode(&symbols, &indexes, tables).unwrap();
        assert!(
            can_hold(bytes.len(), &[(n as u64, tables)]),
            "{} bytes",
            bytes.len()
        );
        assert_eq!(decode(&bytes, &indexes, tables).unwrap(), symbols);
        let short = &bytes[..8];
        assert!(!can_hold(8, &[(n as u64, tables)]));
        assert_eq!(
            decode(short, &indexes, tables),
            Err(CodingError::Corrupt(
                "too little data for the symbols it should hold"
            ))
        );
    }

    /// Parts under different table sets share one stream and come back in order; the stream
    /// is smaller than the parts coded apart (one final state instead of one per part).
    #[test]
    fn parts_share_one_stream() {
        let mut rng = xorshift(5);
        let few = &gauss()[..8];
        let parts: Vec<(Vec<i32>, Vec<u16>, &[CdfTable])> = (0..6)
            .map(|k| {
                let tables = if k % 2 == 0 { gauss() } else { few };
                let n = 50 + 40 * k;
                let indexes: Vec<u16> = (0..n)
                    .map(|_| (rng() % tables.len() as u64) as u16)
                    .collect();
                let symbols: Vec<i32> = (0..n).map(|_| (rng() % 9) as i32 - 4).collect();
                (symbols, indexes, tables)
            })
            .collect();
        let mut encoder = Encoder::new();
        for (s, i, t) in &parts {
            encoder.push(s, i, t).unwrap();
        }
        let bytes = encoder.finish();
        let apart: usize = parts
            .iter()
            .map(|(s, i, t)| encode(s, i, t).unwrap().len())
            .sum();
        assert!(bytes.len() < apart, "{} vs {apart}", bytes.len());
        let mut decoder = Decoder::new(&bytes).unwrap();
        for (s, i, t) in &parts {
            let mut out = Vec::new();
            decoder.decode_into(i, t, &mut out).unwrap();
            assert_eq!(&out, s);
        }
        decoder.finish().unwrap();
        // Stopping a part early leaves data behind, which `finish` reports.
        let mut decoder = Decoder::new(&bytes).unwrap();
        let (_, i, t) = &parts[0];
        decoder.decode_into(i, t, &mut Vec::new()).unwrap();
        assert_eq!(
            decoder.finish(),
            Err(CodingError::Corrupt("data left over after the last symbol"))
        );
    }

    /// The size bound adds up over parts: parts that each fit the payload alone can
    /// together claim more symbols than it holds.
    #[test]
    fn size_bound_counts_every_part() {
        let tables = &gauss()[..1];
        let per_symbol = min_symbol_bits(tables);
        assert!(per_symbol > 0.0);
        let bytes = encode(&[0; 4], &[0; 4], tables).unwrap();
        let fits = (available_bits(bytes.len()) / per_symbol) as usize;
        assert!(can_hold(bytes.len(), &[(fits as u64, tables)]));
        assert!(!can_hold(
            bytes.len(),
            &[(fits as u64, tables), (fits as u64, tables)]
        ));
        let mut decoder = Decoder::new(&bytes).unwrap();
        let indexes = vec![0u16; fits];
        let _ = decoder.decode_into(&indexes, tables, &mut Vec::new());
        assert_eq!(
            decoder.decode_into(&indexes, tables, &mut Vec::new()),
            Err(CodingError::Corrupt(
                "too little data for the symbols it should hold"
            ))
        );
        assert_eq!(min_symbol_bits(&[]), 0.0);
    }

    #[test]
    fn empty_input_is_an_empty_stream() {
        let bytes = encode(&[], &[], gauss()).unwrap();
        assert!(bytes.is_empty());
        assert_eq!(decode(&bytes, &[], gauss()).unwrap(), Vec::<i32>::new());
    }

    #[test]
    fn rate_matches_ideal_code_length() {
        let mut rng = xorshift(3);
        let t = &gauss()[30]; // σ ≈ 4.7
        let symbols: Vec<i32> = (0..50_000).map(|_| ((rng() % 17) as i32 - 8) / 2).collect();
        let ideal: f64 = symbols.iter().map(|&v| t.cost_bits(v)).sum();
        let bytes = encode(&symbols, &vec![30; symbols.len()], gauss()).unwrap();
        let real = 8.0 * bytes.len() as f64;
        assert!(
            real >= ideal && real < ideal * 1.001 + 64.0,
            "real {real} ideal {ideal}"
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert_eq!(
            encode(&[1], &[], gauss()),
            Err(CodingError::LengthMismatch {
                symbols: 1,
                indexes: 0
            })
        );
        assert_eq!(
            encode(&[1], &[64], gauss()),
            Err(CodingError::BadIndex {
                index: 64,
                tables: 64
            })
        );
        assert!(matches!(
            decode(&[1, 2, 3], &[0], gauss()),
            Err(CodingError::Corrupt(_))
        ));
        assert!(matches!(
            decode(&[0, 0, 0, 0], &[0], gauss()),
            Err(CodingError::Corrupt(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = xorshift(11);
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len * 4).map(|_| rng() as u8).collect();
            let indexes: Vec<u16> = (0..len * 3).map(|_| (rng() % 64) as u16).collect();
            let _ = decode(&bytes, &indexes, gauss());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(pairs in proptest::collection::vec((any::<i32>(), 0u16..64, any::<bool>()), 0..300)) {
            // Mostly small values (the common case), sometimes anything at all.
            let symbols: Vec<i32> = pairs.iter().map(|&(v, _, wild)| if wild { v } else { v % 40 }).collect();
            let indexes: Vec<u16> = pairs.iter().map(|p| p.1).collect();
            let bytes = encode(&symbols, &indexes, gauss()).unwrap();
            prop_assert_eq!(decode(&bytes, &indexes, gauss()).unwrap(), symbols);
        }

        #[test]
        fn corrupted_streams_never_panic(pairs in proptest::collection::vec((-50i32..50, 0u16..64), 1..200), flip in any::<usize>()) {
            let symbols: Vec<i32> = pairs.iter().map(|p| p.0).collect();
            let indexes: Vec<u16> = pairs.iter().map(|p| p.1).collect();
            let mut bytes = encode(&symbols, &indexes, gauss()).unwrap();
            if !bytes.is_empty() {
                let i = flip % (bytes.len() * 8);
                bytes[i / 8] ^= 1 << (i % 8);
            }
            let _ = decode(&bytes, &indexes, gauss());
        }
    }
}
