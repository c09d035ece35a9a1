//! The latent residual predictor: it changes the picture a stream decodes to, never the
//! stream, and the decoder (tiled, on the deterministic path's hyper features) reconstructs
//! what the model computes in training (whole, on its own float hyper features).

use crate::common::*;
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use codec::backend::{self, Job};
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::metrics::psnr_rgb8;
use codec::weights::ModelFile;

/// `file` with a latent residual predictor that does predict something (a new one is zero):
/// small random weights in its last layer.
struct WithLrp(ModelFile);

impl Job for WithLrp {
    type Output = ModelFile;
    fn run<B: Backend>(self, device: B::Device) -> ModelFile {
        let mut model = self.0.to_burn::<B>(&device).unwrap().with_lrp();
        let lrp = model.lrp.as_mut().unwrap();
        let shape = lrp.c3.weight.val().dims();
        lrp.c3.weight = Param::from_tensor(Tensor::random(
            shape,
            Distribution::Uniform(-0.05, 0.05),
            &device,
        ));
        ModelFile::from_model(&model)
    }
}

fn with_lrp(file: ModelFile) -> ModelFile {
    backend::run(cpu_backends()[0], WithLrp(file)).unwrap()
}

/// Codes `image` at quality 5 with each model: the symbols, the decoded picture, and the
/// picture the Burn model itself reconstructs from the image (`Model::code`, no noise).
struct Code(Vec<ModelFile>, Planar);

impl Job for Code {
    type Output = Vec<(Vec<Vec<i32>>, Planar, Planar)>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let q = 5.0;
        self.0
            .into_iter()
            .map(|file| {
                let codec = Codec::<B>::new(file, device.clone()).unwrap();
                let (bytes, latents) = codec.compress_with_latents(&self.1, q).unwrap();
                let decoded = codec.decompress(&bytes).unwrap();
                let (pixels, pw, ph) = self.1.padded(codec::model::arch::PAD_TO);
                let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [1, 3, ph, pw]), &device);
                let x_hat = codec.model.code(codec.model.analysis(x, q), q, false).x_hat;
                let data: Vec<f32> = x_hat.into_data().to_vec().unwrap();
                let size = (self.1.width as usize, self.1.height as usize);
                let trained = Planar {
                    rgb: Planar::unpadded(&data, (pw, ph), size),
                    ..decoded.clone()
                };
                (latents.y, decoded, trained)
            })
            .collect()
    }
}

#[test]
fn the_residual_predictor_changes_the_picture_not_the_symbols() {
    let img = picture(160, 96, 3, 8);
    let plain = shipped_model();
    let predicted = with_lrp(plain.clone());
    assert!(predicted.has_lrp() && !plain.has_lrp());
    let out = backend::run(cpu_backends()[0], Code(vec![plain, predicted], img)).unwrap();
    let [(syms0, pic0, _), (syms1, pic1, trained1)] = &out[..] else {
        unreachable!()
    };
    assert_eq!(syms0, syms1, "the predictor changed the symbols");
    let apart = psnr_rgb8(pic0, pic1);
    let together = psnr_rgb8(pic1, trained1);
    eprintln!(
        "with and without the predictor: {apart:.1} dB; decoder and Burn model: {together:.1} dB"
    );
    assert!(apart < 45.0, "the predictor changed nothing: {apart:.1} dB");
    assert!(
        together >= 50.0,
        "the decoder's prediction is not the model's: {together:.1} dB"
    );
}

/// The predictor runs on tiles of its own: 600×360 pads to 640×384, 40×24 latent pixels, 3×2
/// tiles of 16, and the reconstructions with small tiles and with one agree within 50 dB
/// (checked in `Tiled`).
#[test]
fn the_residual_predictor_joins_tiles_without_seams() {
    let model = with_lrp(shipped_model());
    backend::run(
        cpu_backends()[0],
        crate::determinism::Tiled(model, picture(600, 360, 3, 8)),
    )
    .unwrap();
}
