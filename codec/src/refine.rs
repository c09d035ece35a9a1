//! Encoder-side latent refinement (`--refine N`).
//!
//! The analysis transform is *amortized*: one network maps every image to its latent, so for
//! a particular image the latent it gives is close to, but not, the one that minimises the
//! cost the model was trained for. Refinement searches for a better latent for this image by
//! gradient descent on that cost, `bpp + λ(q)·255²·MSE`, with the entropy model and the decoder
//! held fixed (the idea of Campos et al. 2019 and Yang et al. 2020). Only the encoder changes:
//! the stream has the same format and decodes with the same decoder, on any backend.
//!
//! Each step takes its gradient from the training relaxation (rates of `y` plus uniform noise,
//! the decoder fed straight-through rounded latents), which is smooth where the rounded cost is
//! piecewise constant, and then scores the latent as the coder will see it: rounded latents,
//! the rates of the rounded symbols and the decoder's reconstruction of them (the model's
//! estimate of the real file, within about 0.5%). The best latent scored is returned, so
//! refinement never returns one whose estimated cost is above that of the unrefined latent;
//! this matters because the relaxation and the rounded cost part ways after some steps.
//!
//! A step costs two forward passes and one backward pass of the coding model over the whole
//! image (about 2.5 s for a Kodak image on a 2-core CPU with LibTorch): this is for evaluation
//! and for encodes where time is cheap.

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

use crate::model::arch;
use crate::model::{ForwardOutput, Model};

/// Adam's first step size, in quantization bins (each element of `y` moves about this far per
/// step at first), decayed linearly to zero over the steps. Larger (0.02, 0.03) overshoots and
/// smaller (0.003) gains less in the same steps (kodim03, quality 4).
const STEP: f64 = 0.01;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// Largest image refinement accepts: its memory grows with the image (the backward pass keeps
/// every activation of the decoder and the entropy model: a 768×512 image peaks at 1.3 GB
/// against 0.6 GB for plain encoding, so about 8 GB at this limit).
pub const MAX_PIXELS: usize = 4 << 20;

/// What a refinement did, in the units of the training loss (bpp + λ·255²·MSE).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Cost of the unrefined latent.
    pub initial: f64,
    /// Cost of the latent returned.
    pub best: f64,
    /// The step at which it was found (0: refinement found nothing better).
    pub best_step: usize,
}

/// Refines the gained latent `y` (`[1, M, h/16, w/16]`, from [`Model::analysis`]) of the
/// padded image `x` (`[1, 3, ph, pw]`) whose real content is its top-left `height × width`,
/// for `steps` steps at quality `q`. Returns the best latent found and what it cost.
pub fn refine<B: Backend>(
    model: &Model<Autodiff<B>>,
    x: Tensor<B, 4>,
    y: Tensor<B, 4>,
    (height, width): (usize, usize),
    q: f32,
    steps: usize,
) -> (Tensor<B, 4>, Report) {
    let lambda = arch::lambda_for(q);
    let target = x.narrow(2, 0, height).narrow(3, 0, width);
    // Scoring needs no gradient, so it runs on the plain backend: no autodiff graph is
    // recorded for a pass that is never differentiated.
    let plain = model.valid();
    let score = |y: &Tensor<B, 4>| -> f64 {
        rd_cost(&plain, y.clone(), &target, q, lambda, false)
            .into_scalar()
            .elem()
    };
    let target = Tensor::<Autodiff<B>, 4>::from_inner(target.clone());

    let initial = score(&y);
    let mut best = (initial, y.clone(), 0);
    let mut y = y;
    let mut first = y.zeros_like();
    let mut second = y.zeros_like();
    for step in 1..=steps {
        let variable = Tensor::<Autodiff<B>, 4>::from_inner(y.clone()).require_grad();
        let grads = rd_cost(model, variable.clone(), &target, q, lambda, true).backward();
        let g = variable
            .grad(&grads)
            .expect("the cost depends on every latent");
        first = first.mul_scalar(BETA1) + g.clone().mul_scalar(1.0 - BETA1);
        second = second.mul_scalar(BETA2) + g.powi_scalar(2).mul_scalar(1.0 - BETA2);
        let t = step as i32;
        let m_hat = first.clone().div_scalar(1.0 - BETA1.powi(t));
        let v_hat = second.clone().div_scalar(1.0 - BETA2.powi(t));
        let size = STEP * (1.0 - (step - 1) as f64 / steps as f64);
        y = y - (m_hat / v_hat.sqrt().add_scalar(EPSILON)).mul_scalar(size);
        let value = score(&y);
        if value < best.0 {
            best = (value, y.clone(), step);
        }
    }
    let (best_cost, y, best_step) = best;
    (
        y,
        Report {
            initial,
            best: best_cost,
            best_step,
        },
    )
}

/// The training loss `bpp + λ·255²·MSE` of coding the gained latent `y` at quality `q`, the
/// reconstruction cropped to `target`'s size (the padding is not the image); with `noise`, the
/// training relaxation (rates of `y` plus uniform noise), else the rounded latent.
fn rd_cost<B: Backend>(
    model: &Model<B>,
    y: Tensor<B, 4>,
    target: &Tensor<B, 4>,
    q: f32,
    lambda: f64,
    noise: bool,
) -> Tensor<B, 1> {
    let [_, _, height, width] = target.dims();
    let out = model.code(y, q, noise);
    ForwardOutput {
        x_hat: out.x_hat.narrow(2, 0, height).narrow(3, 0, width),
        bits: out.bits,
    }
    .rd_loss(target.clone(), lambda)
    .loss
}
