//! Golden streams of the shipped model's encoder: `testdata/shipped/` holds a few small PNG
//! pictures and the streams `ember encode` wrote of them with `models/ember-mrc-v1.safetensors`.
//! Every CPU backend built must write those bytes again exactly, so that any change in what the
//! encoder writes (transforms, quantization, entropy parameters, container) is a deliberate
//! one, made together with its goldens.
//!
//! The shipped model is retrained now and then; its fingerprint is in `MANIFEST`, and a new
//! model comes with new goldens: `EMBER_WRITE_GOLDEN=1 cargo test --release -p codec --test
//! suite shipped::` rewrites the streams and the manifest (never the input pictures), as
//! `scripts/decide.sh` does when it installs a model.
//!
//! Why byte equality can hold across backends although the analysis transform runs in float:
//! the encoder rounds `y − μ` with μ from the deterministic path, so two backends disagree only
//! where their analyses straddle a rounding boundary. On pictures this small that has not
//! happened; a failure on a new backend or CPU says it did, and names the first differing byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use codec::image_io::Planar;

/// (picture, quality): each picture is coded at each of its qualities.
const CASES: [(&str, &[&str]); 3] = [
    ("rgb-48x32", &["1", "4", "8"]),
    ("rgba-40x40", &["2.5"]),
    ("gray-33x17", &["6"]),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/shipped")
}

fn shipped_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/ember-mrc-v1.safetensors")
}

/// The input pictures, made once by [`write_pictures`] and then kept as files, so that the
/// goldens never depend on how a machine computes the pattern's sines.
fn pictures() -> [(&'static str, Planar); 3] {
    let mut rgba = Planar::pattern(40, 40, 3, 8, 1.0);
    // A disc of opaque pixels in a transparent field, with a soft edge: the alpha plane and
    // the encoder's fill of invisible colour both take part.
    rgba.alpha = Some(
        (0..40 * 40)
            .map(|i| {
                let (x, y) = ((i % 40) as f32 - 19.5, (i / 40) as f32 - 19.5);
                let r = (x * x + y * y).sqrt();
                ((16.0 - r).clamp(0.0, 1.0) * 255.0) as u16
            })
            .collect(),
    );
    [
        ("rgb-48x32", Planar::pattern(48, 32, 3, 8, 0.0)),
        ("rgba-40x40", rgba),
        ("gray-33x17", Planar::pattern(33, 17, 1, 8, 2.0)),
    ]
}

fn write_pictures() {
    for (name, picture) in pictures() {
        let path = dir().join(format!("{name}.png"));
        if !path.exists() {
            picture.save_png(&path).unwrap();
        }
    }
}

fn fingerprint() -> String {
    format!("{:016x}", shipped_model().hash)
}

/// `ember encode` of `input` at `quality` on backend `kind`, as bytes.
fn encode(kind: &str, input: &Path, quality: &str, out: &Path) -> Vec<u8> {
    let run = Command::new(env!("CARGO_BIN_EXE_ember-codec"))
        .args(["encode", "--backend", kind, "-q", quality])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "ember encode {} on {kind}: {}",
        input.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(out).unwrap()
}

#[test]
fn the_shipped_encoder_writes_its_golden_streams_on_every_cpu_backend_which_decode_well() {
    assert!(shipped_path().is_file(), "the shipped model is committed");
    let tmp = tempfile::tempdir().unwrap();
    let write = std::env::var_os("EMBER_WRITE_GOLDEN").is_some();
    let backends: Vec<&str> = cpu_backends().iter().map(|k| k.name()).collect();
    if write {
        std::fs::create_dir_all(dir()).unwrap();
        write_pictures();
        let mut manifest = format!(
            "# streams of the pictures here by the shipped model (fingerprint below), one line each:\n\
             # name quality bytes\nmodel {}\n",
            fingerprint()
        );
        for (name, qualities) in CASES {
            for q in qualities {
                let stream = dir().join(format!("{name}-q{q}.ember"));
                let bytes = encode(
                    backends[0],
                    &dir().join(format!("{name}.png")),
                    q,
                    &tmp.path().join("new.ember"),
                );
                codec::fsutil::write_atomic(&stream, &bytes).unwrap();
                manifest.push_str(&format!("{name} {q} {}\n", bytes.len()));
            }
        }
        codec::fsutil::write_atomic(&dir().join("MANIFEST"), manifest.as_bytes()).unwrap();
    }
    let manifest = std::fs::read_to_string(dir().join("MANIFEST")).unwrap();
    let recorded = manifest
        .lines()
        .find_map(|l| l.strip_prefix("model "))
        .expect("MANIFEST names the model");
    assert_eq!(
        recorded,
        fingerprint(),
        "the shipped model changed since its golden streams were written; rewrite them with \
         EMBER_WRITE_GOLDEN=1 cargo test --release -p codec --test suite shipped::"
    );
    let mut checked = 0;
    for (name, qualities) in CASES {
        for q in qualities {
            let want = std::fs::read(dir().join(format!("{name}-q{q}.ember"))).unwrap();
            for kind in &backends {
                let got = encode(
                    kind,
                    &dir().join(format!("{name}.png")),
                    q,
                    &tmp.path().join(format!("{name}-{q}-{kind}.ember")),
                );
                if got != want {
                    let first = got.iter().zip(&want).position(|(a, b)| a != b);
                    panic!(
                        "{name} at quality {q} on {kind}: {} bytes, golden {} bytes, first \
                         difference at byte {first:?}",
                        got.len(),
                        want.len()
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * backends.len());
    decode_close_to_their_pictures();
}

/// The goldens decode on every CPU backend, to pictures close to their sources: a golden
/// stream that decoded to noise would pin a broken encoder.
fn decode_close_to_their_pictures() {
    let model = shipped_model();
    for (name, qualities) in CASES {
        let source = Planar::load(&dir().join(format!("{name}.png"))).unwrap();
        for q in qualities {
            let bytes = std::fs::read(dir().join(format!("{name}-q{q}.ember"))).unwrap();
            for kind in cpu_backends() {
                let (decoded, _) = codec::backend::run(kind, Decode(model.clone(), bytes.clone()))
                    .unwrap()
                    .unwrap();
                let p = codec::metrics::psnr_rgb8(&visible(&source), &visible(&decoded));
                assert!(p > 24.0, "{name} q{q} on {}: {p:.2} dB", kind.name());
                assert_eq!(decoded.alpha, source.alpha, "{name}: alpha is lossless");
            }
        }
    }
}

/// `image` as stored, with the colour of fully transparent pixels (which the encoder replaces
/// by a fill nobody sees) set to black.
fn visible(image: &Planar) -> Planar {
    let mut out = image.as_stored();
    if let Some(alpha) = &image.alpha {
        let n = alpha.len();
        for (i, _) in alpha.iter().enumerate().filter(|(_, a)| **a == 0) {
            for c in 0..3 {
                out.rgb[c * n + i] = 0.0;
            }
        }
    }
    out
}
