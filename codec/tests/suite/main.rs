//! The codec's integration tests, as one test binary: each module drives the library or the
//! `ember` binary from outside. One binary, not one per file, because each binary compiles the
//! whole codec again for every backend it runs (about two and a half minutes apiece on the
//! two-core CI machine); cargo's `--test suite` with a module path as the filter runs one part
//! (`cargo test -p codec --test suite determinism::`).

mod cli;
mod common;
mod conformance;
mod determinism;
mod estimate;
mod eval;
mod global;
mod lrp;
mod precision;
mod refine;
mod shipped;
