//! Ember's entropy models and entropy coder.
//!
//! - [`gaussian`]: the Gaussian conditional's 64 scale tables, built with integer arithmetic
//!   ([`fixed`]) so they are identical on every platform.
//! - [`factorized`]: per-channel tables of the hyper-latent prior, quantized from the trained
//!   density at export and stored with the model.
//! - [`table`]: the integer CDF table both of them produce, with an escape symbol.
//! - [`coder`]: batched ANS coding (through `constriction`) of tensors of symbols with a
//!   table index per symbol, several tensors to one stream.
//!
//! Nothing in this crate uses floating point on the coding path, so a stream encoded on one
//! machine decodes on any other.

pub mod bench_data;
pub mod coder;
pub mod factorized;
pub mod fixed;
pub mod gaussian;
pub mod table;

pub use coder::{CodingError, Decoder, Encoder, can_hold, decode, encode, min_symbol_bits};
pub use factorized::FactorizedTables;
pub use gaussian::GaussianTables;
pub use table::{CdfTable, TableError};

/// Bits of probability precision of every table: frequencies sum to `2^PRECISION`.
/// 16 bits (as CompressAI) keeps the smallest-scale tables within 1e-4 bits of ideal.
pub const PRECISION: usize = 16;
