//! Ember's codec: the bitstream format, the model registry and (with #3) the learned model
//! and its compress/decompress paths. The `ember` binary is a thin CLI over this library.

pub mod bitstream;
pub mod zoo;
