//! The `ember` binary itself: what it answers alone, and how it hands coding to `ember-codec`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/golden")
        .join(name)
}

fn run(ember: &Path, args: &[&str]) -> Output {
    Command::new(ember).args(args).output().expect("ember runs")
}

/// A copy of `ember` in a folder of its own, without `ember-codec` beside it.
fn alone(dir: &Path) -> PathBuf {
    let copy = dir.join("ember");
    std::fs::copy(env!("CARGO_BIN_EXE_ember"), &copy).unwrap();
    copy
}

#[test]
fn commands_without_a_model_run_without_the_codec_binary() {
    let dir = tempfile::tempdir().unwrap();
    let ember = alone(dir.path());
    let stream = golden("rgb-17x33-q4.ember");
    let out = run(&ember, &["info", stream.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("17x33"));
    let out = run(&ember, &["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("encode"));
    let out = run(&ember, &["bench", "entropy", "--symbols", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A usage error is one line and status 2, a missing codec binary one line and status 1.
    let out = run(&ember, &["encode", "--quality", "high"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = run(&ember, &["decode", stream.to_str().unwrap(), "-o", "x.png"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ember: error: cannot run ") && err.contains("ember-codec"),
        "{err}"
    );
}

/// The point of the split: `ember` does not link LibTorch (nor any other compute library),
/// whose loading costs every command that links it half a second.
#[test]
fn ember_links_no_compute_library() {
    let out = match Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_ember"))
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => return cli::skip_test("ldd is not available"),
    };
    let libs = String::from_utf8_lossy(&out.stdout);
    for lib in ["torch", "c10", "cuda", "stdc++"] {
        assert!(!libs.contains(lib), "ember links {lib}:\n{libs}");
    }
}

/// With `ember-codec` beside it (as `cargo build` and `cargo install` put them), coding
/// commands run there with the same arguments and exit status.
#[test]
fn coding_commands_continue_in_ember_codec() {
    let ember = Path::new(env!("CARGO_BIN_EXE_ember"));
    if !ember.with_file_name("ember-codec").exists() {
        return cli::skip_test("ember-codec is not built beside ember (build the workspace)");
    }
    let dir = tempfile::tempdir().unwrap();
    let (png, stream, back) = (
        dir.path().join("x.png"),
        dir.path().join("x.ember"),
        dir.path().join("y.png"),
    );
    image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, 128])
    })
    .save(&png)
    .unwrap();
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    let out = run(ember, &["encode", &path(&png), "-o", &path(&stream)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(ember, &["decode", &path(&stream), "-o", &path(&back)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image::open(&back).unwrap().to_rgb8().dimensions(), (24, 16));
    let out = run(ember, &["decode", "/no/such.ember", "-o", "y.png"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.ember"));
}
