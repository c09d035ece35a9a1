//! Ember's codec: the bitstream format, the model registry, the learned model and its
//! compress/decompress paths. The `ember` binary is a thin CLI over this library.

pub mod alpha;
pub mod backend;
pub mod bitstream;
pub mod compress;
pub mod detnet;
pub mod eval;
pub mod fsutil;
pub mod icc;
pub mod image_io;
pub mod metrics;
pub mod model;
pub mod rate;
pub mod refine;
pub mod weights;
pub mod zoo;
