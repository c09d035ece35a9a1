//! Model 2's global references: the entropy model as trained (Burn) and as coded (the
//! deterministic path) compute the same thing, and a model 1 gains them without changing.

use crate::common::*;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use codec::backend::{self, Job};
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::weights::ModelFile;
use codec::zoo::ModelId;

/// The fraction of latent values where the training model's `ŷ` (Burn, `Model::entropy`
/// without noise) and the decoder's (symbols plus the deterministic path's means) differ by
/// more than float noise, for `image` coded at quality 4.
struct Disagreement(ModelFile, Planar);

impl Job for Disagreement {
    type Output = f64;
    fn run<B: Backend>(self, device: B::Device) -> f64 {
        let codec = Codec::<B>::new(self.0, device.clone()).unwrap();
        let bytes = codec.compress(&self.1, 4.0).unwrap();
        let decoded = codec.decode_latents(&bytes).unwrap().y_hat;
        let (pixels, pw, ph) = self.1.padded(codec::model::arch::PAD_TO);
        let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [1, 3, ph, pw]), &device);
        let y = codec.model.analysis(x, 4.0);
        let trained: Vec<f32> = codec
            .model
            .entropy(y, false)
            .y_hat
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(trained.len(), decoded.data.len());
        let differ = trained
            .iter()
            .zip(&decoded.data)
            .filter(|(a, b)| (*a - *b).abs() > 1e-3 * a.abs().max(1.0))
            .count();
        differ as f64 / trained.len() as f64
    }
}

/// If the coder read the references differently from the model it was trained as (another
/// order of channels, other values, another normaliser), the non-anchors' means would differ
/// and so would about half of `ŷ`; float noise alone moves a value across a rounding boundary
/// rarely.
#[test]
fn the_coder_computes_the_references_the_model_was_trained_with() {
    let img = picture(192, 128, 3, 8);
    for file in synthetics() {
        let model = file.model;
        let share = backend::run(cpu_backends()[0], Disagreement(file, img.clone())).unwrap();
        eprintln!(
            "{model:?}: ŷ differs at {:.3}% of the values",
            100.0 * share
        );
        assert!(
            share < 0.005,
            "{model:?}: ŷ differs at {:.2}%",
            100.0 * share
        );
    }
}

/// Global references added to a model 1 start with zero weight at the aggregation: the model
/// 2 made from it codes an image into exactly the same symbols.
#[test]
fn adding_global_references_keeps_the_symbols() {
    struct Both(ModelFile, Planar);
    impl Job for Both {
        type Output = (Vec<Vec<i32>>, Vec<Vec<i32>>, ModelId);
        fn run<B: Backend>(self, device: B::Device) -> Self::Output {
            let v2 =
                ModelFile::from_model(&self.0.to_burn::<B>(&device).unwrap().with_global_refs());
            let code = |file: ModelFile| {
                let codec = Codec::<B>::new(file, device.clone()).unwrap();
                codec.compress_with_latents(&self.1, 5.0).unwrap().1.y
            };
            let model = v2.model;
            (code(self.0), code(v2), model)
        }
    }
    let (v1, v2, model) =
        backend::run(cpu_backends()[0], Both(synthetic(), picture(160, 96, 3, 8))).unwrap();
    assert_eq!(model, ModelId::MrcV2);
    // The deterministic path sums the same products, then adds the zero-weighted ones:
    // adding `0 · x` changes no sum, so every mean, scale and symbol is the same.
    assert_eq!(v1, v2);
}
