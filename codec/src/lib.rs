//! Ember's codec: the model registry, the learned model and its compress/decompress paths, and
//! evaluation. The file format is the `bitstream` crate and the command line the `cli` crate;
//! both are re-exported here under the names they had when they were modules of this one.

pub mod backend;
pub mod commands;
pub mod compress;
pub mod compressai;
pub mod detnet;
pub mod eval;
pub mod image_io;
pub mod metrics;
pub mod model;
pub mod rate;
pub mod refine;
pub mod weights;
pub mod zoo;

pub use bitstream::{self, alpha, icc};
pub use cli::{args, fsutil};

#[cfg(test)]
pub(crate) use cli::skip_test;
