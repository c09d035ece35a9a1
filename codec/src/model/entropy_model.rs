//! The multi-reference checkerboard entropy model of `y`, for training.
//!
//! `y` is split into channel slices ([`arch::SLICES`]). Slice `k` is coded in two passes over a
//! checkerboard: **anchors** (`(row + col)` even) get their Gaussian parameters from the hyperprior
//! and from a channel context of slices `< k`; **non-anchors** additionally see a spatial context
//! computed from the slice's decoded anchors. At coding time the same computation runs in
//! [`crate::detnet`], which reads these weights by name.
//!
//! Model 2 adds **global references** ([`Global`]): the non-anchor pass also reads the slice's
//! decoded anchors from anywhere in the image, weighted by how alike two positions are, once by
//! the slice's own base features (intra-slice) and once by the previous slice's decoded latent
//! (inter-slice). Each reference is another block of channels at the aggregation's input, so
//! a model 1 gains them function-preserving ([`Slice::with_global`]).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

use super::arch::{self, AGG, CTX, GLOBAL_D, GLOBAL_EPS, SLICES, SPATIAL, SPATIAL_K};
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

/// The query and key projections of one global read: 1×1 convolutions to [`GLOBAL_D`]
/// features, made non-negative by a ReLU ([`attend`]).
#[derive(Module, Debug)]
pub struct QueryKey<B: Backend> {
    pub q: Conv2d<B>,
    pub k: Conv2d<B>,
}

impl<B: Backend> QueryKey<B> {
    fn new(cin: usize, device: &B::Device) -> Self {
        Self {
            q: conv(cin, GLOBAL_D, 1, 1, device),
            k: conv(cin, GLOBAL_D, 1, 1, device),
        }
    }

    /// The read of `values` (kept at `keys_at`, zero elsewhere) at every position, the
    /// similarity of two positions measured on `source`.
    fn read(
        &self,
        source: Tensor<B, 4>,
        keys_at: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let q = relu(self.q.forward(source.clone()));
        let k = relu(self.k.forward(source)) * keys_at;
        attend(q, k, values)
    }
}

/// The global references of a model 2 slice (MLIC++'s global intra- and inter-slice contexts,
/// in a form the deterministic path can evaluate exactly). Both read the slice's decoded
/// anchors — their quantization residual `ŷ − μ` and its magnitude — from the whole latent,
/// for the non-anchor pass: the local spatial context sees the 12 nearest anchors, these see
/// every anchor whose surroundings resemble the position being predicted.
///
/// - **intra-slice**: the resemblance is measured on the slice's base features (hyper
///   features and channel context), which both anchors and non-anchors have;
/// - **inter-slice** (from the second slice on): measured on the previous slice's decoded
///   latent, i.e. the spatial structure the previous slice showed, carried over to this one.
///
/// Why linear attention with ReLU features and not softmax attention: the weights come out of
/// sums of products and one division per output, all correctly rounded, so the
/// deterministic path computes them bit-exactly on every machine; softmax needs `exp`, whose
/// results differ between maths libraries. It also costs time linear in the latent's size.
#[derive(Module, Debug)]
pub struct Global<B: Backend> {
    pub intra: QueryKey<B>,
    pub inter: Option<QueryKey<B>>,
}

#[derive(Module, Debug)]
pub struct Slice<B: Backend> {
    pub channel: Option<ChannelCtx<B>>,
    /// Applied to the slice's anchors (non-anchors zeroed).
    pub spatial: Conv2d<B>,
    pub aggregate: Aggregate<B>,
    /// Model 2's global references; `None` in model 1.
    pub global: Option<Global<B>>,
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
        Self {
            channel,
            spatial: conv(c, SPATIAL, SPATIAL_K, 1, device),
            aggregate: Aggregate {
                c1: conv(arch::aggregate_in(k, false), AGG, 1, 1, device),
                c2: conv(AGG, AGG, 1, 1, device),
                c3: conv(AGG, 2 * c, 1, 1, device),
            },
            global: None,
        }
    }

    /// Slice `k` with global references added (model 2), computing what it computed before:
    /// the aggregation's first layer gains zero weights for the references' channels, so they
    /// contribute nothing until training moves those weights. A slice that has references
    /// is returned as it is.
    pub fn with_global(mut self, k: usize) -> Self {
        if self.global.is_some() {
            return self;
        }
        let device = self.spatial.weight.val().device();
        let extra = arch::global_in(k, true);
        let c1 = &mut self.aggregate.c1;
        let weight = Tensor::cat(
            vec![c1.weight.val(), Tensor::zeros([AGG, extra, 1, 1], &device)],
            1,
        );
        // A new leaf: the joined tensor must be a parameter of its own.
        c1.weight = Param::from_tensor(weight.detach());
        self.global = Some(Global {
            intra: QueryKey::new(arch::base_in(k), &device),
            inter: (k > 0).then(|| QueryKey::new(SLICES[k - 1], &device)),
        });
        self
    }

    fn params(&self, inputs: Vec<Tensor<B, 4>>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let a = &self.aggregate;
        let h = relu(a.c1.forward(Tensor::cat(inputs, 1)));
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
        k: usize,
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
        // The anchor pass has no spatial or global reference yet: zeros in their place.
        let unknown = SPATIAL + arch::global_in(k, self.global.is_some());
        let (mean_a, scale_a) = self.params(vec![
            base.clone(),
            Tensor::zeros([n, unknown, h, w], &device),
        ]);
        let y_hat_a = ste_round(y.clone(), mean_a.clone());
        let spatial = self.spatial.forward(y_hat_a.clone() * anchor.clone());
        let mut inputs = vec![base.clone(), spatial];
        if let Some(global) = &self.global {
            // The anchors' residual is the symbol the coder wrote for them.
            let residual = (y_hat_a - mean_a.clone()) * anchor.clone();
            let values = Tensor::cat(vec![residual.clone(), residual.abs()], 1);
            inputs.push(global.intra.read(base, anchor.clone(), values.clone()));
            if let Some(inter) = &global.inter {
                let last = previous
                    .last()
                    .expect("a slice after the first has a previous one");
                inputs.push(inter.read(last.clone(), anchor.clone(), values));
            }
        }
        let (mean_n, scale_n) = self.params(inputs);
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

/// Linear attention with non-negative features: for queries `q` and keys `k` (`[n, d, h, w]`,
/// both `≥ 0`) and values `v` (`[n, c, h, w]`), the mean of `v` over all positions weighted by
/// `q(p)·k(p')`, at every position `p`: `(q(p)ᵀ Σ k(p') v(p')ᵀ) / (q(p)ᵀ Σ k(p') + ε)`. Positions
/// whose key is zero (non-anchors) do not count. The sums over positions come first, so the
/// cost is linear in the number of positions.
pub fn attend<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, d, h, w] = q.dims();
    let c = v.dims()[1];
    let q = q.reshape([n, d, h * w]).swap_dims(1, 2);
    let k = k.reshape([n, d, h * w]);
    let v = v.reshape([n, c, h * w]).swap_dims(1, 2);
    let kv = k.clone().matmul(v);
    let k_sum = k.sum_dim(2).swap_dims(1, 2);
    let num = q.clone().matmul(kv);
    let den = (q * k_sum).sum_dim(2).add_scalar(GLOBAL_EPS);
    (num / den).swap_dims(1, 2).reshape([n, c, h, w])
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

    /// The references start with zero weight at the aggregation, but that weight has a
    /// gradient wherever decoded anchors carry a residual, so training can move it.
    #[test]
    fn the_references_aggregation_weights_get_a_gradient() {
        use crate::model::Model;
        use burn::backend::{Autodiff, NdArray};
        type B = Autodiff<NdArray>;
        let dev = Default::default();
        let model = Model::<B>::new(&dev).with_global_refs();
        let y = Tensor::<B, 4>::random([1, arch::M, 8, 8], Distribution::Normal(0.0, 4.0), &dev);
        let bits = model.entropy(y, true).bits;
        let grads = bits.sum().backward();
        for (k, slice) in model.slices.iter().enumerate() {
            let c1 = &slice.aggregate.c1.weight;
            let grad = c1.grad(&grads).expect("the aggregation has a gradient");
            let (old, new) = (arch::aggregate_in(k, false), arch::aggregate_in(k, true));
            let references = grad.narrow(1, old, new - old);
            let size: f32 = references.abs().sum().into_scalar();
            assert!(
                size > 0.0,
                "slice {k}: no gradient reaches the references' weights"
            );
        }
    }

    #[test]
    fn anchor_mask_is_the_checkerboard_of_even_row_plus_column() {
        check_anchor_mask::<burn::backend::NdArray>(Default::default());
        #[cfg(feature = "tch")]
        check_anchor_mask::<burn::backend::LibTorch>(burn::backend::libtorch::LibTorchDevice::Cpu);
    }
}
