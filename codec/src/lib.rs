//! Ember's codec: the bitstream format, the model registry, the learned model and its
//! compress/decompress paths. The `ember` binary is a thin CLI over this library.

pub mod alpha;
pub mod args;
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

/// Says on the test run's output that the calling unit test skips its check, and why (written
/// to stderr directly: the harness swallows `eprintln!` from a passing test).
#[cfg(test)]
pub(crate) fn skip_test(why: impl std::fmt::Display) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}
