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
//! piecewise constant. After the last step the latent is scored as the coder will see it:
//! rounded latents, the rates of the rounded symbols and the decoder's reconstruction of them
//! (the model's estimate of the real file, within about 0.5%), and it is kept only if that cost
//! is below the unrefined latent's, so refinement never returns a worse latent. The step size
//! decays to zero over the steps, so the last latent is nearly always the best one seen
//! (kodim03 at quality 8 with every step scored, at a step of 0.01: best at step 9 or 10 of
//! 10, 18 of 20): scoring only the last saves a forward pass per step.
//!
//! A step costs one forward and one backward pass of the coding model over the whole image.
//! The backward pass differentiates with respect to the latent alone: the weights' gradients
//! are switched off, which skips their half of the backward work (two steps on kodim03 at
//! quality 8: 10.9 s per encode instead of 14.9 s, peak memory 1.4 GB instead of 1.6 GB, on a
//! 2-core AVX2 CPU with LibTorch in f32; ten steps about 40 s). The transforms run in bf16
//! where the hardware computes it natively ([`gradient_precision`]; the gradient only steers
//! the search, the scoring and the stream are f32). This is for evaluation and for encodes
//! where time is cheap.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

use crate::model::arch;
use crate::model::{ForwardOutput, Model, Precision};

/// Adam's first step size, in quantization bins (each element of `y` moves about this far per
/// step at first, Adam's first steps being nearly sign descent), decayed linearly to zero over
/// the steps. It grows with λ as its cube root from 0.01 at quality 2: with 10 steps on
/// kodim03 the best of 0.005–0.08 was about 0.01 at qualities 1–2, 0.02 at 5–6, 0.03 at 7 and
/// 0.04–0.06 at 8 (where 0.01 cut the cost by 2.7% and 0.04 by 6.2%; kodim20 alike). At high
/// rates the distortion term dominates and its gradient is steady enough for long steps; at
/// low rates the noisy rate term makes them overshoot.
fn step_size(lambda: f64) -> f64 {
    0.01 * (lambda / arch::lambda_for(2.0)).cbrt().max(1.0)
}
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
    /// Cost of the latent returned: the refined one's, or `initial` where refinement found
    /// nothing better and the unrefined latent was kept.
    pub best: f64,
}

/// Refines the gained latent `y` (`[1, M, h/16, w/16]`, from [`Model::analysis`]) of the
/// padded image `x` (`[1, 3, ph, pw]`) whose real content is its top-left `height × width`,
/// for `steps` steps at quality `q`. Returns the refined latent, or `y` itself where that costs
/// no more, and what each cost.
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
    let precision = gradient_precision::<B>(&target.device());
    // Only the latent is the variable: with the weights' gradients off, the backward pass
    // computes none of theirs.
    let gradient_model = model.clone().no_grad().with_precision(precision);
    let size = step_size(lambda);

    let initial = score(&y);
    let mut refined = y.clone();
    let mut first = y.zeros_like();
    let mut second = y.zeros_like();
    for step in 1..=steps {
        let variable = Tensor::<Autodiff<B>, 4>::from_inner(refined.clone()).require_grad();
        let grads = rd_cost(&gradient_model, variable.clone(), &target, q, lambda, true).backward();
        let g = variable
            .grad(&grads)
            .expect("the cost depends on every latent");
        first = first.mul_scalar(BETA1) + g.clone().mul_scalar(1.0 - BETA1);
        second = second.mul_scalar(BETA2) + g.powi_scalar(2).mul_scalar(1.0 - BETA2);
        let t = step as i32;
        let m_hat = first.clone().div_scalar(1.0 - BETA1.powi(t));
        let v_hat = second.clone().div_scalar(1.0 - BETA2.powi(t));
        let decay = 1.0 - (step - 1) as f64 / steps as f64;
        refined = refined - (m_hat / v_hat.sqrt().add_scalar(EPSILON)).mul_scalar(size * decay);
    }
    let last = if steps > 0 { score(&refined) } else { initial };
    let (latent, best) = if last < initial {
        (refined, last)
    } else {
        (y, initial)
    };
    (latent, Report { initial, best })
}

/// The precision of the gradient passes on `device`: bf16 transforms where that is known to
/// work (LibTorch, see [`Precision`]) and measured to pay, LibTorch on an x86 CPU with
/// AVX-512-BF16 (a gradient pass 1.9 s against 2.5 s in f32, and 10 steps on kodim03 at
/// quality 8 ending within 0.05% of f32's cost); else f32. Without the instructions LibTorch
/// emulates bf16, and on GPUs it is not measured yet.
fn gradient_precision<B: Backend>(device: &B::Device) -> Precision {
    if B::name(device) == "libtorch<cpu>" && cpu_computes_bf16() {
        Precision::Bf16
    } else {
        Precision::Full
    }
}

fn cpu_computes_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
