//! Ember's codec: the bitstream format, the model registry, the learned model and its
//! compress/decompress paths. The `ember` binary is a thin CLI over this library.

pub mod bitstream;
pub mod fsutil;
pub mod model;
pub mod weights;
pub mod zoo;
