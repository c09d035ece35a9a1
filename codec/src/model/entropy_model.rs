//! The multi-reference checkerboard entropy model of `y`, for training.
//!
//! `y` is split into channel slices ([`arch::SLICES`]). Slice `k` is coded in two passes over a
//! checkerboard: **anchors** (`(row + col)` even) get their Gaussian parameters from the hyperprior
//! and from a channel context of slices `< k`; **non-anchors** additionally see a spatial context
//! computed from the slice's decoded anchors. At coding time the same computation runs in
//! [`crate::detnet`], which reads these weights by name.
//!
//! The seam for further references (global context, latent residual prediction) is the
//! aggregation input: another reference is another block of channels concatenated there.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

use super::arch::{self, AGG, CTX, HYPER, SLICES, SPATIAL, SPATIAL_K};
use super::layers::conv;

/// Channel context of slice `k`: what slices `< k` say about it.
#[derive(Module, Debug)]
pub struct ChannelCtx<B: Backend> {
    pub c1: Conv2d<B>,
    pub c2: Conv2d<B>,
}

/// Parameter aggregation: hyper features, channel context and spatial context → (μ, σ).
#[derive(Module, Debug)]
pub struct Aggregate<B: Backend> {
    pub c1: Conv2d<B>,
    pub c2: Conv2d<B>,
    pub c3: Conv2d<B>,
}

#[derive(Module, Debug)]
pub struct Slice<B: Backend> {
    pub channel: Option<ChannelCtx<B>>,
    /// Applied to the slice's anchors (non-anchors zeroed).
    pub spatial: Conv2d<B>,
    pub aggregate: Aggregate<B>,
}

/// Everything the training loss needs from one pass.
pub struct SliceOutput<B: Backend> {
    /// Quantized latents (straight-through rounding around the mean), `[n, c, h, w]`.
    pub y_hat: Tensor<B, 4>,
    /// Likelihoods of the noisy latents, `[n, c, h, w]`.
    pub likelihood: Tensor<B, 4>,
}

impl<B: Backend> Slice<B> {
    pub fn new(k: usize, device: &B::Device) -> Self {
        let c = SLICES[k];
        let prev = arch::slice_start(k);
        let channel = (k > 0).then(|| ChannelCtx {
            c1: conv(prev, CTX, 1, 1, device),
            c2: conv(CTX, CTX, 3, 1, device),
        });
        let agg_in = HYPER + if k > 0 { CTX } else { 0 } + SPATIAL;
        Self {
            channel,
            spatial: conv(c, SPATIAL, SPATIAL_K, 1, device),
            aggregate: Aggregate {
                c1: conv(agg_in, AGG, 1, 1, device),
                c2: conv(AGG, AGG, 1, 1, device),
                c3: conv(AGG, 2 * c, 1, 1, device),
            },
        }
    }

    fn params(&self, base: Tensor<B, 4>, spatial: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let a = &self.aggregate;
        let h = relu(a.c1.forward(Tensor::cat(vec![base, spatial], 1)));
        let h = relu(a.c2.forward(h));
        let out = a.c3.forward(h);
        let c = out.dims()[1] / 2;
        let mean = out.clone().narrow(1, 0, c);
        let scale = out.narrow(1, c, c).abs().clamp_min(arch::SCALE_MIN);
        (mean, scale)
    }

    /// Training pass of slice `k` given the hyper features, the quantized earlier slices and
    /// the latent grid's [`anchor_mask`] (the same for every slice, so made once per pass).
    pub fn forward(
        &self,
        y: Tensor<B, 4>,
        hyper: Tensor<B, 4>,
        previous: &[Tensor<B, 4>],
        anchor: &Tensor<B, 4>,
        noise: bool,
    ) -> SliceOutput<B> {
        let [n, _, h, w] = y.dims();
        let device = y.device();
        let mut base = vec![hyper];
        if let Some(ch) = &self.channel {
            let prev = Tensor::cat(previous.to_vec(), 1);
            base.push(relu(ch.c2.forward(relu(ch.c1.forward(prev)))));
        }
        let base = Tensor::cat(base, 1);
        let (mean_a, scale_a) =
            self.params(base.clone(), Tensor::zeros([n, SPATIAL, h, w], &device));
        let y_hat_a = ste_round(y.clone(), mean_a.clone());
        let spatial = self.spatial.forward(y_hat_a * anchor.clone());
        let (mean_n, scale_n) = self.params(base, spatial);
        let non_anchor = anchor.clone().neg().add_scalar(1.0);
        let pick = |a: Tensor<B, 4>, b: Tensor<B, 4>| a * anchor.clone() + b * non_anchor.clone();
        let mean = pick(mean_a, mean_n);
        let scale = pick(scale_a, scale_n);
        let y_hat = ste_round(y.clone(), mean.clone());
        let y_rate = if noise {
            y.clone() + y.random_like(Distribution::Uniform(-0.5, 0.5))
        } else {
            y_hat.clone()
        };
        let likelihood = gaussian_likelihood(y_rate - mean, scale);
        SliceOutput { y_hat, likelihood }
    }
}

/// `1` on anchors (`(row + col)` even), `0` elsewhere, shaped `[1, 1, h, w]`.
///
/// Built on the device from index ranges rather than uploaded from host memory: an upload is
/// a synchronous copy that on a GPU first waits for every queued kernel, so a mask uploaded in
/// the middle of the training pass would drain the device queue there and leave the GPU idle
/// while the host issues the next operations (the PyTorch yardstick builds its mask on the
/// device too; until this version each slice uploaded its own, five drains per step).
pub fn anchor_mask<B: Backend>(h: usize, w: usize, device: &B::Device) -> Tensor<B, 4> {
    let rows = Tensor::<B, 1, Int>::arange(0..h as i64, device).reshape([h, 1]);
    let cols = Tensor::<B, 1, Int>::arange(0..w as i64, device).reshape([1, w]);
    (rows + cols)
        .remainder_scalar(2)
        .equal_elem(0)
        .float()
        .reshape([1, 1, h, w])
}

/// `round(y − μ) + μ` in the forward pass, identity in the backward pass.
pub fn ste_round<B: Backend>(y: Tensor<B, 4>, mean: Tensor<B, 4>) -> Tensor<B, 4> {
    let centered = y.clone() - mean;
    y + (centered.clone().round() - centered).detach()
}

/// Mass of the unit bin around `v` under a zero-mean Gaussian of scale `σ`, at least 1e-9.
pub fn gaussian_likelihood<B: Backend>(v: Tensor<B, 4>, scale: Tensor<B, 4>) -> Tensor<B, 4> {
    let v = v.abs();
    let k = std::f32::consts::FRAC_1_SQRT_2;
    // Φ(t) = ½ erfc(−t/√2); using the upper tail of |v| keeps precision for large values.
    let upper = (v.clone().neg().add_scalar(0.5) / scale.clone())
        .mul_scalar(k)
        .erf();
    let lower = (v.neg().sub_scalar(0.5) / scale).mul_scalar(k).erf();
    (upper - lower).mul_scalar(0.5).clamp_min(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_anchor_mask<B: Backend>(device: B::Device) {
        for (h, w) in [(1, 1), (1, 5), (4, 4), (3, 7), (6, 2)] {
            let got: Vec<f32> = anchor_mask::<B>(h, w, &device)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap();
            let want: Vec<f32> = (0..h * w)
                .map(|i| f32::from(u8::from((i / w + i % w).is_multiple_of(2))))
                .collect();
            assert_eq!(got, want, "{h}x{w}");
        }
    }

    #[test]
    fn anchor_mask_is_the_checkerboard_of_even_row_plus_column() {
        check_anchor_mask::<burn::backend::NdArray>(Default::default());
        #[cfg(feature = "tch")]
        check_anchor_mask::<burn::backend::LibTorch>(burn::backend::libtorch::LibTorchDevice::Cpu);
    }
}
