//! Encoder-side latent refinement (`Codec::compress_refined`): same format, same decoder, and
//! with the shipped model smaller real cost than the plain encoder.

use crate::common::*;
use burn::tensor::backend::Backend;
use codec::backend::{self, Job};
use codec::compress::{Codec, CodecError};
use codec::image_io::Planar;
use codec::model::arch;
use codec::refine::Report;
use codec::weights::ModelFile;

/// Encodes with `steps` of refinement and decodes the result with the plain decoder.
struct Refined(ModelFile, Planar, f32, usize);

struct Outcome {
    bytes: Vec<u8>,
    report: Option<Report>,
    decoded: Planar,
}

impl Job for Refined {
    type Output = Result<Outcome, CodecError>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let Refined(file, image, q, steps) = self;
        let codec = Codec::<B>::new(file, device)?;
        let (bytes, _, report) = codec.compress_refined(&image, q, steps)?;
        let decoded = codec.decompress(&bytes)?;
        Ok(Outcome {
            bytes,
            report,
            decoded,
        })
    }
}

fn refined(file: &ModelFile, image: &Planar, q: f32, steps: usize) -> Outcome {
    backend::run(
        cpu_backends()[0],
        Refined(file.clone(), image.clone(), q, steps),
    )
    .unwrap()
    .unwrap()
}

#[test]
fn zero_steps_is_the_plain_encoder_and_refined_streams_decode_as_usual() {
    let model = synthetic();
    let img = picture(128, 64, 3, 8);
    let plain = backend::run(cpu_backends()[0], Encode(model.clone(), img.clone(), 4.0))
        .unwrap()
        .0;
    let none = refined(&model, &img, 4.0, 0);
    assert_eq!(none.bytes, plain);
    assert!(none.report.is_none());

    // The report must describe the stream that came out: a lower cost than the plain latent's
    // means a refined latent was coded (other bytes), an equal one that the plain latent was
    // kept (the plain encoder's bytes exactly).
    let out = refined(&model, &img, 4.0, 3);
    let report = out.report.expect("refinement ran");
    assert!(report.initial.is_finite() && report.best.is_finite());
    assert_eq!(
        report.best < report.initial,
        out.bytes != plain,
        "report (initial {}, best {}) does not match the stream written",
        report.initial,
        report.best
    );
    assert_eq!((out.decoded.width, out.decoded.height), (128, 64));
    codec::bitstream::read(&out.bytes).unwrap();
}

#[test]
fn images_too_large_to_refine_are_refused_before_any_work() {
    let side = 2100u32;
    assert!((side * side) as usize > codec::refine::MAX_PIXELS);
    let img = picture(side, side, 3, 8);
    let err = backend::run(cpu_backends()[0], Refined(synthetic(), img, 4.0, 1))
        .unwrap()
        .err()
        .expect("refused");
    assert!(matches!(err, CodecError::TooLargeToRefine { .. }), "{err}");
    assert!(err.to_string().contains("pixels"), "{err}");
}

/// The real cost the model was trained for, `bpp + λ·255²·MSE`, from the file's size and its
/// decoded pixels.
fn real_cost(original: &Planar, outcome: &Outcome, q: f32) -> f64 {
    let pixels = f64::from(original.width) * f64::from(original.height);
    let bpp = 8.0 * outcome.bytes.len() as f64 / pixels;
    let psnr = codec::metrics::psnr_rgb8(original, &outcome.decoded);
    let mse = 10f64.powf(-psnr / 10.0);
    bpp + arch::lambda_for(q) * 255.0 * 255.0 * mse
}

/// With the shipped model a few steps already lower what the real file costs (size and decoded
/// error together), at a low and a high quality: the test that refinement does what it is for.
#[test]
fn refinement_lowers_the_real_cost_on_kodak() {
    let Some((kodak, model)) = kodak_and_shipped_model() else {
        return;
    };
    // A 256×256 crop of kodim08's window and wall texture keeps this quick on any backend.
    let full = image::open(kodak.join("kodim08.png")).unwrap();
    let img = Planar::from_dynamic(&full.crop_imm(256, 128, 256, 256));
    for q in [2.0f32, 8.0] {
        let plain = refined(&model, &img, q, 0);
        let better = refined(&model, &img, q, 4);
        let (before, after) = (real_cost(&img, &plain, q), real_cost(&img, &better, q));
        let report = better.report.unwrap();
        eprintln!(
            "q{q}: real cost {before:.4} -> {after:.4}, estimated {:.4} -> {:.4}",
            report.initial, report.best
        );
        assert!(after < before, "q{q}: real cost {before:.4} -> {after:.4}");
    }
}
