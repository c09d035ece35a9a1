//! Building blocks shared by the transforms and the entropy model.
//!
//! Only operations that the deterministic CPU path ([`crate::detnet`]) also implements appear in
//! the parts of the model that produce entropy parameters: convolutions with odd square kernels
//! and "same" padding, ReLU, depth-to-space upsampling and channel concatenation.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType, Tensor};

/// A convolution with a `k × k` kernel, stride 1 or 2 and "same" padding (`k / 2`).
pub fn conv<B: Backend>(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// The float type the analysis and synthesis transforms compute in.
///
/// Training on LibTorch can run them in bfloat16 (`ember-train run --precision bf16`): on a
/// CPU with AVX-512-BF16, such as this project's, a training step then takes 0.54 of the time,
/// while the parameters, their gradients, Adam and the entropy model stay in f32. It costs a
/// little per step (train/GPU.md, "bf16 transforms"), so training defaults to `Full`, and
/// coding always uses `Full`: a stream's reconstruction does not depend on how its model was
/// trained. Only LibTorch backends take `Bf16`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Every operation in the backend's float type (f32).
    #[default]
    Full,
    /// `g_a` and `g_s` in bf16, convolutions and GDNs: their input cast to bf16 once, each
    /// layer's f32 parameters cast at use, products accumulated by the backend's bf16 kernels
    /// (in f32 on oneDNN and cuDNN), the transform's output cast back to f32. Gradients flow
    /// back through the casts to the f32 parameters.
    Bf16,
}

impl Precision {
    /// `x` in the type a transform at this precision computes in.
    pub fn enter<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Precision::Full => x,
            Precision::Bf16 => in_dtype(x, FloatDType::BF16.into()),
        }
    }
}

/// `t` in `dtype`: itself when it already is, so the f32 path gains no cast nodes.
pub fn in_dtype<B: Backend, const D: usize>(t: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}

/// `conv.forward(x)` computed in `x`'s float type, the f32 weights cast to it. Only for the
/// "same"-padded convolutions of [`conv`].
pub fn conv_in<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let dtype = x.dtype();
    if conv.weight.val().dtype() == dtype {
        return conv.forward(x);
    }
    conv2d(
        x,
        conv.weight.val().cast(dtype),
        conv.bias.as_ref().map(|b| b.val().cast(dtype)),
        same_options(conv),
    )
}

/// The options of a "same"-padded convolution of [`conv`], for computing it from other
/// weights (cast, scaled) with the functional `conv2d`.
pub fn same_options<B: Backend>(conv: &Conv2d<B>) -> ConvOptions<2> {
    let [kh, kw] = conv.kernel_size;
    ConvOptions::new(conv.stride, [kh / 2, kw / 2], conv.dilation, conv.groups)
}

/// `x` with its elements stored channels-last (in `[n, h, w, c]` order), as the same logical
/// `[n, c, h, w]` tensor.
///
/// Why: LibTorch's CPU convolutions (oneDNN) run about 1.4× as fast on a channels-last input,
/// and their output is channels-last again, as are element-wise results, so a network keeps the
/// layout once its input has it ([`depth_to_space`] and [`Gdn`] are written to keep it too).
/// Burn has no memory-format API; a permuted copy gives the strides that LibTorch reads as
/// channels-last. Where `x` already has them this is free; other backends compute the same
/// values from a copy.
pub fn channels_last<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 2, 3, 1])
        .reshape([n * h * w * c])
        .reshape([n, h, w, c])
        .permute([0, 3, 1, 2])
}

/// Rearranges `[n, 4c, h, w]` into `[n, c, 2h, 2w]` (PyTorch's `pixel_shuffle(2)` layout:
/// input channel `4c' + 2i + j` lands at row offset `i`, column offset `j`).
///
/// It works in `[n, h, w, c]` order, so a channels-last input costs one copy and gives a
/// channels-last output ([`channels_last`]).
pub fn depth_to_space<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.permute([0, 2, 3, 1])
        .reshape([n, h, w, c, 2, 2])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([n, 2 * h, 2 * w, c])
        .permute([0, 3, 1, 2])
}

/// The inverse of [`depth_to_space`]: `[n, c, 2h, 2w]` into `[n, 4c, h, w]`, the pixel at row
/// offset `i`, column offset `j` of each 2×2 block landing in channel `4c' + 2i + j`. Also in
/// `[n, h, w, c]` order, for the same reason.
pub fn space_to_depth<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h2, w2] = x.dims();
    let (h, w) = (h2 / 2, w2 / 2);
    x.permute([0, 2, 3, 1])
        .reshape([n, h, 2, w, 2, c])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([n, h, w, 4 * c])
        .permute([0, 3, 1, 2])
}

/// ×2 upsampling as a 3×3 convolution to four times the channels followed by depth-to-space.
/// Cheaper than a transposed convolution on every backend measured for this project (2× on
/// burn-cuda, 10× on ndarray at inference) and free of its checkerboard artefacts.
#[derive(Module, Debug)]
pub struct Up<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Up<B> {
    pub fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        Self {
            conv: conv(cin, 4 * cout, 3, 1, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        depth_to_space(self.conv.forward(x))
    }

    /// [`forward`](Self::forward) in `x`'s float type (see [`conv_in`]).
    pub fn forward_in(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        depth_to_space(conv_in(&self.conv, x))
    }
}

/// Simplified generalized divisive normalization (Johnston et al. 2019):
/// `y = x / (β + γ|x|)`, or its inverse `y = x · (β + γ|x|)`. It keeps most of GDN's
/// rate-distortion benefit over ReLU at a fraction of its cost (no square, no square root).
/// `β` and `γ` stay non-negative through a squared parametrization.
///
/// The squares make zero a dead point: an entry of `γ` at exactly zero has a zero gradient and
/// never moves. So the off-diagonal entries, which carry the cross-channel normalization that
/// is GDN's point, start at [`GAMMA_SEED`] rather than zero, and [`Gdn::trainable`] lifts
/// models saved with dead entries.
#[derive(Module, Debug)]
pub struct Gdn<B: Backend> {
    pub beta: Param<Tensor<B, 1>>,
    /// `[c_out, c_in]`.
    pub gamma: Param<Tensor<B, 2>>,
    inverse: bool,
}

/// Smallest magnitude a `γ` entry trains from. Its square, 1e-6, changes a layer's output by
/// about `c · 1e-6 · |x|` against `β² ≈ 1` (1e-4 for 128 channels), while Adam, being
/// invariant to the gradient's scale, moves the entry at the full learning rate from the
/// first step.
pub const GAMMA_SEED: f32 = 1e-3;

impl<B: Backend> Gdn<B> {
    pub fn new(channels: usize, inverse: bool, device: &B::Device) -> Self {
        let beta = Tensor::ones([channels], device);
        let gamma = Tensor::<B, 2>::eye(channels, device)
            .mul_scalar(0.1f32.sqrt() - GAMMA_SEED)
            .add_scalar(GAMMA_SEED);
        Self {
            beta: Param::from_tensor(beta),
            gamma: Param::from_tensor(gamma),
            inverse,
        }
    }

    /// Sets every `γ` entry that is exactly zero to [`GAMMA_SEED`], so that all of them
    /// train. Models made before the seed existed had exactly diagonal `γ`s that training
    /// could never leave: their GDNs normalized each channel only by itself. Any other entry,
    /// however small, still has a gradient and is kept, so a model without dead entries
    /// passes through unchanged.
    pub fn trainable(mut self) -> Self {
        self.gamma = self.gamma.map(|g| {
            let dead = g.clone().equal_elem(0.0);
            g.mask_fill(dead, GAMMA_SEED).detach().require_grad()
        });
        self
    }

    /// Computes in `x`'s float type; `β` and `γ` are squared in f32 first.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let dtype = x.dtype();
        let beta = in_dtype(self.beta.val().powi_scalar(2).add_scalar(1e-6), dtype);
        let gamma = in_dtype(self.gamma.val().powi_scalar(2), dtype);
        // Apply γ as a 1×1 convolution, [n, h·w, c] × γᵀ: in this order a channels-last `x`
        // is read and `norm` written without a copy ([`channels_last`]).
        let ax = x.clone().abs().permute([0, 2, 3, 1]).reshape([n, h * w, c]);
        let norm = ax.matmul(gamma.transpose().unsqueeze::<3>()) + beta.reshape([1, 1, c]);
        let norm = norm.reshape([n, h, w, c]).permute([0, 3, 1, 2]);
        if self.inverse { x * norm } else { x / norm }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray;

    #[test]
    fn depth_to_space_matches_pixel_shuffle_layout() {
        let dev = Default::default();
        // One output channel: input channels 0..4 hold the four phases (i, j) = (0,0),(0,1),(1,0),(1,1).
        let x = Tensor::<B, 4>::from_data(
            TensorData::new((0..4).map(|v| v as f32).collect::<Vec<_>>(), [1, 4, 1, 1]),
            &dev,
        );
        let y = depth_to_space(x);
        assert_eq!(y.dims(), [1, 1, 2, 2]);
        assert_eq!(
            y.into_data().to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn space_to_depth_inverts_depth_to_space() {
        let dev = Default::default();
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(
                (0..2 * 8 * 3 * 5).map(|v| v as f32).collect::<Vec<_>>(),
                [2, 8, 3, 5],
            ),
            &dev,
        );
        let up = depth_to_space(x.clone());
        assert_eq!(up.dims(), [2, 2, 6, 10]);
        space_to_depth(up)
            .into_data()
            .assert_eq(&x.into_data(), true);
    }

    /// The loss `Σ GDN(x)²` has a non-zero derivative in every entry of `γ` unless the
    /// squared parametrization kills it; returns how many entries got a zero gradient.
    fn dead_gamma_entries(gdn: &Gdn<burn::backend::Autodiff<B>>) -> usize {
        use burn::tensor::Distribution;
        let x = Tensor::random(
            [2, 4, 3, 3],
            Distribution::Normal(0.0, 1.0),
            &Default::default(),
        );
        let grads = gdn.forward(x).powi_scalar(2).sum().backward();
        let g = gdn.gamma.grad(&grads).expect("γ is a parameter");
        g.into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .filter(|v| **v == 0.0)
            .count()
    }

    #[test]
    fn every_gamma_entry_trains() {
        type A = burn::backend::Autodiff<B>;
        let dev = Default::default();
        for inverse in [false, true] {
            assert_eq!(dead_gamma_entries(&Gdn::<A>::new(4, inverse, &dev)), 0);
            // A diagonal γ, as older models were saved: 12 dead entries, all lifted.
            let mut old = Gdn::<A>::new(4, inverse, &dev);
            old.gamma = Param::from_tensor(Tensor::eye(4, &dev));
            assert_eq!(dead_gamma_entries(&old), 12);
            let lifted = old.trainable();
            assert_eq!(dead_gamma_entries(&lifted), 0);
            let entries: Vec<f32> = lifted.gamma.val().into_data().to_vec().unwrap();
            assert_eq!(entries[0], 1.0, "live entries are kept");
            assert_eq!(entries[1], GAMMA_SEED);
            let fresh = Gdn::<A>::new(4, inverse, &dev);
            let before: Vec<f32> = fresh.gamma.val().into_data().to_vec().unwrap();
            let after: Vec<f32> = fresh.trainable().gamma.val().into_data().to_vec().unwrap();
            assert_eq!(before, after, "a model without dead entries is unchanged");
        }
    }

    #[test]
    fn gdn_inverts_igdn_for_identity_gamma() {
        let dev = Default::default();
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(vec![0.5f32, -2.0, 3.0, 0.0], [1, 1, 2, 2]),
            &dev,
        );
        let g = Gdn::<B>::new(1, false, &dev);
        let y = g.forward(x.clone());
        // y = x / (1 + 0.1|x|) elementwise for one channel.
        let want: Vec<f32> = [0.5f32, -2.0, 3.0, 0.0]
            .iter()
            .map(|v| v / (1.0 + 1e-6 + 0.1 * v.abs()))
            .collect();
        let got = y.into_data().to_vec::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
