//! The Ember models (`ember-mrc-v1`, and `ember-mrc-v2` with global references) in Burn,
//! generic over the backend.
//!
//! ```text
//! x ─g_a─▶ y·gain(q) ─h_a─▶ z ─round─▶ ẑ ─h_s─▶ hyper features ───────────┐
//!                 │                                   │                   │
//!                 └── slices × checkerboard (entropy_model) ─▶ ŷ ─[lrp]─·inv_gain(q)─g_s─[post]─▶ x̂
//! ```
//! The residual predictor (`lrp`) and the post-filter (`post`) are present where the weights
//! have them. Training uses [`Model::forward`]. Coding uses the transforms here (any backend, float) and
//! the deterministic entropy path in [`crate::detnet`] for everything that yields entropy
//! parameters.

pub mod arch;
pub mod bottleneck;
pub mod entropy_model;
pub mod layers;
pub mod lrp;
pub mod post_filter;

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use arch::{HYPER, LAMBDAS, LEVELS, M, N, SLICES, Z};
use bottleneck::Bottleneck;
use entropy_model::Slice;
pub use layers::Precision;
use layers::{Gdn, Up, channels_last, conv, conv_in, in_dtype};
use lrp::Lrp;
use post_filter::{PostFilter, interpolate_levels};

#[derive(Module, Debug)]
pub struct Analysis<B: Backend> {
    pub c1: Conv2d<B>,
    pub g1: Gdn<B>,
    pub c2: Conv2d<B>,
    pub g2: Gdn<B>,
    pub c3: Conv2d<B>,
    pub g3: Gdn<B>,
    pub c4: Conv2d<B>,
}

#[derive(Module, Debug)]
pub struct Synthesis<B: Backend> {
    pub u1: Up<B>,
    pub g1: Gdn<B>,
    pub u2: Up<B>,
    pub g2: Gdn<B>,
    pub u3: Up<B>,
    pub g3: Gdn<B>,
    pub u4: Up<B>,
}

#[derive(Module, Debug)]
pub struct HyperAnalysis<B: Backend> {
    pub c1: Conv2d<B>,
    pub c2: Conv2d<B>,
    pub c3: Conv2d<B>,
}

/// Hyper-synthesis: two ×2 upsamplings and a 1×1 projection to [`HYPER`] channels.
#[derive(Module, Debug)]
pub struct HyperSynthesis<B: Backend> {
    pub u1: Up<B>,
    pub u2: Up<B>,
    pub c3: Conv2d<B>,
}

/// Width of the hyper-synthesis between its two upsamplings.
pub const HS_MID: usize = 96;

impl<B: Backend> HyperSynthesis<B> {
    pub fn forward(&self, z_hat: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = relu(self.u1.forward(z_hat));
        let h = relu(self.u2.forward(h));
        self.c3.forward(h)
    }
}

#[derive(Module, Debug)]
pub struct Model<B: Backend> {
    pub g_a: Analysis<B>,
    pub g_s: Synthesis<B>,
    pub h_a: HyperAnalysis<B>,
    pub h_s: HyperSynthesis<B>,
    pub bottleneck: Bottleneck<B>,
    pub slices: Vec<Slice<B>>,
    /// Per-level channel gains on `y` (`[LEVELS, M]`), and their decoder-side inverses.
    pub gain: Param<Tensor<B, 2>>,
    pub inv_gain: Param<Tensor<B, 2>>,
    /// The full-resolution filter after `g_s` ([`post_filter`]), where the weights have one.
    pub post: Option<PostFilter<B>>,
    /// The latent residual predictor before `g_s` ([`lrp`]), where the weights have one.
    pub lrp: Option<Lrp<B>>,
    /// What `g_a` and `g_s` compute in (a training choice, not part of the weights; coding
    /// uses [`Precision::Full`]).
    pub precision: Precision,
}

/// Smallest probability the rate estimate charges one symbol (see [`Model::forward`]).
const ESTIMATE_FLOOR: f32 = 1.0 / 65536.0;

/// What [`Model::forward`] returns for the loss.
pub struct ForwardOutput<B: Backend> {
    pub x_hat: Tensor<B, 4>,
    /// Total bits (`−Σ log2 p`) of `y` and `z`, one value per image, `[n]`.
    pub bits: Tensor<B, 1>,
}

/// The loss the model is trained for and its two terms, each a one-element tensor.
pub struct RdLoss<B: Backend> {
    /// `λ·255²·MSE + bpp`.
    pub loss: Tensor<B, 1>,
    pub mse: Tensor<B, 1>,
    /// Bits per pixel of `x`.
    pub bpp: Tensor<B, 1>,
}

/// What [`Model::entropy`] returns.
pub struct Entropy<B: Backend> {
    /// The quantized latent `ŷ` (gained), as the decoder has it.
    pub y_hat: Tensor<B, 4>,
    /// The hyper-synthesis output the slices' parameters were computed from, `[n, HYPER, h, w]`:
    /// the latent residual predictor's side input.
    pub hyper: Tensor<B, 4>,
    /// Total bits of `y` and `z` (`−Σ log2 p`), one value per image, `[n]`.
    pub bits: Tensor<B, 1>,
}

impl<B: Backend> ForwardOutput<B> {
    /// The training loss at trade-off `lambda` for the images `x` this pass reconstructed
    /// (`x_hat` and `x` of the same shape; rates counted per pixel of `x`). Training and the
    /// encoder's latent refinement both minimise exactly this.
    pub fn rd_loss(self, x: Tensor<B, 4>, lambda: f64) -> RdLoss<B> {
        let [n, _, h, w] = x.dims();
        let mse = (self.x_hat - x).powi_scalar(2).mean();
        let bpp = self.bits.sum().div_scalar((n * h * w) as f64);
        let loss = mse.clone().mul_scalar(lambda * 255.0 * 255.0) + bpp.clone();
        RdLoss { loss, mse, bpp }
    }
}

impl<B: Backend> Model<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            g_a: Analysis {
                c1: conv(3, N, 5, 2, device),
                g1: Gdn::new(N, false, device),
                c2: conv(N, N, 5, 2, device),
                g2: Gdn::new(N, false, device),
                c3: conv(N, N, 5, 2, device),
                g3: Gdn::new(N, false, device),
                c4: conv(N, M, 5, 2, device),
            },
            g_s: Synthesis {
                u1: Up::new(M, N, device),
                g1: Gdn::new(N, true, device),
                u2: Up::new(N, N, device),
                g2: Gdn::new(N, true, device),
                u3: Up::new(N, N, device),
                g3: Gdn::new(N, true, device),
                u4: Up::new(N, 3, device),
            },
            h_a: HyperAnalysis {
                c1: conv(M, Z, 3, 1, device),
                c2: conv(Z, Z, 5, 2, device),
                c3: conv(Z, Z, 5, 2, device),
            },
            h_s: HyperSynthesis {
                u1: Up::new(Z, Z, device),
                u2: Up::new(Z, HS_MID, device),
                c3: conv(HS_MID, HYPER, 1, 1, device),
            },
            bottleneck: Bottleneck::new(Z, device),
            slices: (0..SLICES.len()).map(|k| Slice::new(k, device)).collect(),
            gain: Param::from_tensor(Tensor::ones([LEVELS, M], device)),
            inv_gain: Param::from_tensor(Tensor::ones([LEVELS, M], device)),
            post: None,
            lrp: None,
            precision: Precision::Full,
        }
        .with_gain_ladder()
    }

    /// Sets the per-level gains to a `√λ` ladder around each channel's present (geometric
    /// mean) gain, and the inverse gains to match.
    ///
    /// Why `√λ`: at high rate a uniform quantizer of step `Δ` costs `Δ²/12` in MSE and
    /// `−log2 Δ` in bits, so `λ·MSE + R` is smallest at `Δ ∝ 1/√λ`; a gain is `1/Δ`. Starting
    /// there gives every level its own rate from the first step; with all gains at one, the
    /// levels must drift apart by gradient alone, which took thousands of steps and left all
    /// eight qualities at nearly the same rate. Training refines the ladder per channel.
    pub fn with_gain_ladder(mut self) -> Self {
        let device = self.gain.val().device();
        let lambda_ref = (LAMBDAS[0] * LAMBDAS[LEVELS - 1]).sqrt();
        let ladder: Vec<f32> = LAMBDAS
            .iter()
            .map(|l| (l / lambda_ref).sqrt() as f32)
            .collect();
        let ladder = Tensor::<B, 1>::from_floats(ladder.as_slice(), &device).reshape([LEVELS, 1]);
        let centre = |t: Tensor<B, 2>| t.abs().clamp_min(1e-4).log().mean_dim(0).exp();
        let gain = centre(self.gain.val()) * ladder.clone();
        let inv_gain = centre(self.inv_gain.val()) / ladder;
        self.gain = Param::from_tensor(gain.detach());
        self.inv_gain = Param::from_tensor(inv_gain.detach());
        self
    }

    /// The model computing its transforms `g_a` and `g_s` at `precision` (see
    /// [`Precision`]). They are nearly all of a full-resolution training step's multiply-adds;
    /// the entropy model runs on the 16× smaller latent grid and, with the gains, likelihoods
    /// and loss, stays in f32.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The model with a post-filter of `shape` after its synthesis: its own where that has the
    /// same fold and at least the width, its own widened (same function, see
    /// [`PostFilter::widen`]) where it has the fold and is narrower, else a new (identity)
    /// one.
    pub fn with_post_filter(mut self, shape: post_filter::Shape) -> Self {
        self.post = Some(match self.post.take() {
            Some(post) if post.shape().fold == shape.fold && post.width() >= shape.width => post,
            Some(post) if post.shape().fold == shape.fold => post.widen(shape.width),
            _ => PostFilter::new(shape, &self.gain.val().device()),
        });
        self
    }

    /// The model with a new (identity) post-filter of `shape` in place of any it had.
    pub fn with_new_post_filter(mut self, shape: post_filter::Shape) -> Self {
        self.post = Some(PostFilter::new(shape, &self.gain.val().device()));
        self
    }

    /// The model with global references in every slice's entropy model (model 2,
    /// [`entropy_model::Global`]), added function-preserving where it had none.
    pub fn with_global_refs(mut self) -> Self {
        self.slices = (self.slices.into_iter().enumerate())
            .map(|(k, slice)| slice.with_global(k))
            .collect();
        self
    }

    /// Does the entropy model have global references (model 2)?
    pub fn has_global_refs(&self) -> bool {
        self.slices.iter().all(|s| s.global.is_some())
    }

    /// Makes every GDN's `γ` trainable in all its entries (see [`Gdn::trainable`]); the
    /// trainer applies it to whatever it starts or resumes from.
    pub fn with_trainable_gdn(mut self) -> Self {
        self.g_a.g1 = self.g_a.g1.trainable();
        self.g_a.g2 = self.g_a.g2.trainable();
        self.g_a.g3 = self.g_a.g3.trainable();
        self.g_s.g1 = self.g_s.g1.trainable();
        self.g_s.g2 = self.g_s.g2.trainable();
        self.g_s.g3 = self.g_s.g3.trainable();
        self
    }

    /// Gain vector for a fractional quality `q ∈ [1, LEVELS]`: geometric interpolation between
    /// the two neighbouring levels (Cui et al. 2021), so rate varies smoothly with `q`.
    pub fn gain_for(&self, q: f32, inverse: bool) -> Tensor<B, 4> {
        let table = if inverse {
            self.inv_gain.val()
        } else {
            self.gain.val()
        };
        interpolate_levels(table, q).reshape([1, M, 1, 1])
    }

    /// `y·gain(q)` for images `x` in `[0, 1]`, `[n, 3, H, W]` with sides multiples of 64.
    pub fn analysis(&self, x: Tensor<B, 4>, q: f32) -> Tensor<B, 4> {
        self.analysis_ungained(x) * self.gain_for(q, false)
    }

    /// `y` before the quality's gain: the part of [`analysis`](Self::analysis) that does not
    /// depend on the quality, so an encoder trying several qualities runs it once.
    pub fn analysis_ungained(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let a = &self.g_a;
        let dtype = x.dtype();
        let h = self.precision.enter(channels_last(x));
        let h = a.g1.forward(conv_in(&a.c1, h));
        let h = a.g2.forward(conv_in(&a.c2, h));
        let h = a.g3.forward(conv_in(&a.c3, h));
        in_dtype(conv_in(&a.c4, h), dtype)
    }

    /// `z` from gained `y`.
    pub fn hyper_analysis(&self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        let a = &self.h_a;
        let h = leaky_relu(a.c1.forward(y), 0.01);
        let h = leaky_relu(a.c2.forward(h), 0.01);
        a.c3.forward(h)
    }

    /// The model with a latent residual predictor ([`lrp`]): its own where it has one, else a
    /// new one that predicts nothing until trained.
    pub fn with_lrp(mut self) -> Self {
        if self.lrp.is_none() {
            self.lrp = Some(Lrp::new(&self.gain.val().device()));
        }
        self
    }

    /// What the decoder reconstructs from gained `ŷ` and the hyper features that coded it:
    /// the latent residual prediction if the model has one, then [`synthesis`](Self::synthesis).
    pub fn reconstruct(&self, y_hat: Tensor<B, 4>, hyper: Tensor<B, 4>, q: f32) -> Tensor<B, 4> {
        self.synthesis(self.predict_residual(y_hat, hyper), q)
    }

    /// `ŷ` with its predicted quantization residual added where the model has a predictor
    /// ([`lrp`]), else `ŷ` itself: what the synthesis transform takes.
    pub fn predict_residual(&self, y_hat: Tensor<B, 4>, hyper: Tensor<B, 4>) -> Tensor<B, 4> {
        match &self.lrp {
            Some(lrp) => lrp.forward(y_hat, hyper),
            None => y_hat,
        }
    }

    /// The image from the latent the synthesis takes (gained, after any residual prediction):
    /// the synthesis transform, then the post-filter if the model has one.
    pub fn synthesis(&self, y_hat: Tensor<B, 4>, q: f32) -> Tensor<B, 4> {
        let x_hat = self.synthesis_transform(y_hat, q);
        match &self.post {
            Some(post) => post.forward(x_hat, q),
            None => x_hat,
        }
    }

    /// The synthesis transform `g_s` alone (the reconstruction before any post-filter).
    pub fn synthesis_transform(&self, y_hat: Tensor<B, 4>, q: f32) -> Tensor<B, 4> {
        let s = &self.g_s;
        let dtype = y_hat.dtype();
        let h = self
            .precision
            .enter(channels_last(y_hat * self.gain_for(q, true)));
        let h = s.g1.forward(s.u1.forward_in(h));
        let h = s.g2.forward(s.u2.forward_in(h));
        let h = s.g3.forward(s.u3.forward_in(h));
        in_dtype(s.u4.forward_in(h), dtype)
    }

    /// Training forward pass at quality `q`: noisy likelihoods for the rate, straight-through
    /// rounding for what the decoder sees.
    ///
    /// With `noise` false, rates are those of the rounded latents: the estimate of what the
    /// real coder will write, which `ember eval` reports beside the real size.
    pub fn forward(&self, x: Tensor<B, 4>, q: f32, noise: bool) -> ForwardOutput<B> {
        self.code(self.analysis(x, q), q, noise)
    }

    /// [`forward`](Self::forward) from the gained latent `y` on: what the encoder's latent
    /// refinement ([`crate::refine`]) differentiates, with `y` as the variable.
    pub fn code(&self, y: Tensor<B, 4>, q: f32, noise: bool) -> ForwardOutput<B> {
        let Entropy { y_hat, hyper, bits } = self.entropy(y, noise);
        ForwardOutput {
            x_hat: self.reconstruct(y_hat, hyper, q),
            bits,
        }
    }

    /// The entropy model's half of [`code`](Self::code): the quantized latent, the hyper
    /// features and the bits (see [`Entropy`]). Training the entropy model alone on cached
    /// latents needs only this.
    pub fn entropy(&self, y: Tensor<B, 4>, noise: bool) -> Entropy<B> {
        let n = y.dims()[0];
        let z = self.hyper_analysis(y.clone());
        let z_hat = z.clone() + (z.clone().round() - z.clone()).detach();
        let z_rate = if noise {
            z.clone() + z.random_like(Distribution::Uniform(-0.5, 0.5))
        } else {
            z_hat.clone()
        };
        // The estimate charges a symbol what the coder would: its tables give every value in
        // range at least 2^-16 and send rarer ones through an escape of about 16 bits plus a
        // few for the value, not the ~30 bits of the training floor (1e-9). Without this, a
        // few hundred far-tail latents overstated kodim23's size at quality 1 by 2%.
        let cost = |likelihood: Tensor<B, 4>| {
            if noise {
                likelihood
            } else {
                likelihood.clamp_min(ESTIMATE_FLOOR)
            }
        };
        let mut bits = cost(self.bottleneck.likelihood(z_rate))
            .log()
            .sum_dims_squeeze::<1, _>(&[1, 2, 3]);
        let hyper = self.h_s.forward(z_hat);
        let [_, _, h, w] = y.dims();
        let anchor = entropy_model::anchor_mask(h, w, &y.device());
        let mut decoded: Vec<Tensor<B, 4>> = Vec::with_capacity(SLICES.len());
        let mut start = 0;
        for (k, slice) in self.slices.iter().enumerate() {
            let y_k = y.clone().narrow(1, start, SLICES[k]);
            start += SLICES[k];
            let out = slice.forward(k, y_k, hyper.clone(), &decoded, &anchor, noise);
            bits = bits
                + cost(out.likelihood)
                    .log()
                    .sum_dims_squeeze::<1, _>(&[1, 2, 3]);
            decoded.push(out.y_hat);
        }
        Entropy {
            y_hat: Tensor::cat(decoded, 1),
            hyper,
            bits: bits.reshape([n]).mul_scalar(-std::f32::consts::LOG2_E),
        }
    }
}
