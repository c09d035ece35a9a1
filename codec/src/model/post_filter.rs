//! A small residual CNN on the image after the synthesis transform: `x̂ + f(x̂)`.
//!
//! Why: the synthesis ends in a linear 3×3 convolution at half resolution followed by
//! depth-to-space, so nothing non-linear ever sees neighbouring output pixels together. A
//! probe on the shipped model's decoded Kodak images (`train/probe/`) measured +0.24 dB at
//! quality 1 and +0.14 dB at quality 8 from an 11k-parameter filter shared by the qualities,
//! while a linear filter of the same reach gained nothing. At the first shipped width (32) its
//! ~11k multiply-adds per pixel were a fifth of the synthesis transform's; at [`WIDTH`] (64)
//! they are ~40k, three quarters of it, for the capacity the narrow filter ran out of.
//!
//! A filter may instead work on the image folded to half resolution ([`Shape::fold`] 2: each
//! 2×2 block of pixels becomes 12 channels, [`space_to_depth`]), which costs about a quarter of
//! the multiply-adds per pixel at the same width and sees four times the area: the candidate
//! for decoding faster at equal gain (train/LOG.md). Which one a model has is read from its
//! first layer's shape, as the width is.
//!
//! The filter must know the quality (one trained without it helped low qualities and hurt
//! quality 8), so each hidden layer's channels are scaled per quality level, interpolated
//! geometrically between levels as the latent gains are ([`interpolate_levels`]). The last
//! convolution starts at zero, so a new filter is the identity and training starts from the
//! model's own reconstruction.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;

use super::arch::{LEVELS, between_levels};
use super::layers::{conv, depth_to_space, same_options, space_to_depth};

/// Hidden channels of a new filter. The first shipped filter had 32; at 32 its
/// training had stopped gaining (two continuations moved Kodak by under 0.03 dB), so a
/// `--post-filter` run now widens a narrower filter to this ([`PostFilter::widen`]). A
/// model file's filter may have any width: it is read from the tensors' shapes.
pub const WIDTH: usize = 64;
/// Slope of the leaky ReLUs.
const SLOPE: f64 = 0.1;

/// What a filter looks like: its hidden width, and how many pixels per side it folds into
/// channels before filtering (1: none, full resolution; 2: half resolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub width: usize,
    pub fold: usize,
}

impl Shape {
    /// The shape of a new filter where nothing else is asked for.
    pub const DEFAULT: Shape = Shape {
        width: WIDTH,
        fold: 1,
    };

    /// Channels of the (folded) image the filter reads and writes.
    fn channels(self) -> usize {
        3 * self.fold * self.fold
    }
}

#[derive(Module, Debug)]
pub struct PostFilter<B: Backend> {
    pub c1: Conv2d<B>,
    pub c2: Conv2d<B>,
    pub c3: Conv2d<B>,
    /// Per-level scales of the two hidden layers' channels (`[LEVELS, width]` each).
    pub scale1: Param<Tensor<B, 2>>,
    pub scale2: Param<Tensor<B, 2>>,
}

impl<B: Backend> PostFilter<B> {
    /// A filter of this shape that leaves its input unchanged (its last layer is zero) until
    /// trained. `shape.fold` must be 1 or 2.
    pub fn new(shape: Shape, device: &B::Device) -> Self {
        assert!(
            matches!(shape.fold, 1 | 2),
            "a post-filter folds 1 or 2 pixels per side, not {}",
            shape.fold
        );
        let (width, image) = (shape.width, shape.channels());
        let mut c3 = conv(width, image, 3, 1, device);
        c3.weight = Param::from_tensor(Tensor::zeros([image, width, 3, 3], device));
        c3.bias = Some(Param::from_tensor(Tensor::zeros([image], device)));
        let ones = || Param::from_tensor(Tensor::ones([LEVELS, width], device));
        Self {
            c1: conv(image, width, 3, 1, device),
            c2: conv(width, width, 3, 1, device),
            c3,
            scale1: ones(),
            scale2: ones(),
        }
    }

    /// Hidden channels of this filter.
    pub fn width(&self) -> usize {
        self.scale1.dims()[1]
    }

    /// This filter's shape, read from its layers (a loaded filter brings its own).
    pub fn shape(&self) -> Shape {
        Shape {
            width: self.width(),
            fold: fold_of(self.c1.weight.dims()[1]),
        }
    }

    /// The same function with `width` hidden channels (at least the current width): each new
    /// channel of the first layer is freshly initialised, the second layer's new outputs
    /// read every input while its old outputs ignore the new inputs (zero weights), and the
    /// last layer ignores the new channels (zero weights), so the output is unchanged to
    /// rounding and training continues from the trained filter with room to grow. Why not
    /// a second filter after this one: one wider filter keeps a single path through the
    /// decoder, and its new channels see the same input the trained ones do.
    pub fn widen(self, width: usize) -> Self {
        let old = self.width();
        assert!(
            width >= old,
            "a filter of width {old} cannot be narrowed to {width}"
        );
        if width == old {
            return self;
        }
        let add = width - old;
        // The parts are parameters of a model that may be tracked for gradients; the joined
        // tensors must be new leaves to be parameters themselves.
        fn leaf<B: Backend, const D: usize>(t: Tensor<B, D>) -> Param<Tensor<B, D>> {
            Param::from_tensor(t.detach())
        }
        let device = self.scale1.val().device();
        let fresh = Self::new(
            Shape {
                width,
                ..self.shape()
            },
            &device,
        );
        let image = self.shape().channels();
        let grow = |param: &Param<Tensor<B, 4>>, extra: Tensor<B, 4>, dim: usize| {
            leaf(Tensor::cat(vec![param.val(), extra], dim))
        };
        let bias = |conv: &Conv2d<B>| conv.bias.as_ref().expect("conv has a bias").val();

        let mut c1 = self.c1;
        c1.weight = grow(&c1.weight, fresh.c1.weight.val().narrow(0, old, add), 0);
        c1.bias = Some(leaf(Tensor::cat(
            vec![bias(&c1), bias(&fresh.c1).narrow(0, old, add)],
            0,
        )));

        let mut c2 = self.c2;
        let old_rows = Tensor::cat(
            vec![c2.weight.val(), Tensor::zeros([old, add, 3, 3], &device)],
            1,
        );
        let new_rows = fresh.c2.weight.val().narrow(0, old, add);
        c2.weight = leaf(Tensor::cat(vec![old_rows, new_rows], 0));
        c2.bias = Some(leaf(Tensor::cat(
            vec![bias(&c2), bias(&fresh.c2).narrow(0, old, add)],
            0,
        )));

        let mut c3 = self.c3;
        c3.weight = grow(&c3.weight, Tensor::zeros([image, add, 3, 3], &device), 1);

        let scales = |table: Param<Tensor<B, 2>>| {
            leaf(Tensor::cat(
                vec![table.val(), Tensor::ones([LEVELS, add], &device)],
                1,
            ))
        };
        Self {
            c1,
            c2,
            c3,
            scale1: scales(self.scale1),
            scale2: scales(self.scale2),
        }
    }

    /// The filtered reconstruction of `x_hat` (`[n, 3, H, W]`, sides even where the filter
    /// folds) at quality `q`.
    pub fn forward(&self, x_hat: Tensor<B, 4>, q: f32) -> Tensor<B, 4> {
        let folded = self.shape().fold == 2;
        let x = if folded {
            space_to_depth(x_hat.clone())
        } else {
            x_hat.clone()
        };
        let h = leaky_relu(scaled(&self.c1, &self.scale1, q, x), SLOPE);
        let h = leaky_relu(scaled(&self.c2, &self.scale2, q, h), SLOPE);
        let residual = self.c3.forward(h);
        x_hat
            + if folded {
                depth_to_space(residual)
            } else {
                residual
            }
    }
}

/// `conv(x)` with its output channels scaled by row `q` of `table`, computed as one
/// convolution with the scaled weights and bias: the same function, without a pass over the
/// full-resolution hidden channels (the weights are a few thousand numbers, the hidden layer
/// millions).
fn scaled<B: Backend>(
    conv: &Conv2d<B>,
    table: &Param<Tensor<B, 2>>,
    q: f32,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let width = table.dims()[1];
    let scale = interpolate_levels(table.val(), q).reshape([width]);
    let weight = conv.weight.val() * scale.clone().reshape([width, 1, 1, 1]);
    let bias = conv.bias.as_ref().map(|b| b.val() * scale);
    conv2d(x, weight, bias, same_options(conv))
}

/// Row `q` of a per-level table (`[LEVELS, C]`) for a fractional quality `q ∈ [1, LEVELS]`:
/// geometric interpolation of the two neighbouring levels' magnitudes (Cui et al. 2021), so
/// whatever the table scales varies smoothly with `q`. Returns `[1, C]`.
pub fn interpolate_levels<B: Backend>(table: Tensor<B, 2>, q: f32) -> Tensor<B, 2> {
    let table = table.abs().clamp_min(1e-4);
    let (lo, t) = between_levels(q);
    let a = table.clone().narrow(0, lo, 1).log().mul_scalar(1.0 - t);
    let b = table.narrow(0, lo + 1, 1).log().mul_scalar(t);
    (a + b).exp()
}

/// The fold of a filter whose first layer reads `channels` channels: 12 (a 2×2 block's three
/// colours) is 2; anything else is read as the full-resolution 3, and a misshapen file is then
/// refused by the shape check of loading.
pub fn fold_of(channels: usize) -> usize {
    if channels == 12 { 2 } else { 1 }
}

/// Does a tensor name belong to the post-filter? (A model file without any has none.)
pub fn is_post_filter_tensor(name: &str) -> bool {
    name.starts_with("post.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorData};

    /// A `[LEVELS, WIDTH]` table with entry `values(level, channel)`.
    fn table(values: impl Fn(usize, usize) -> f32) -> Tensor<NdArray, 2> {
        let data: Vec<f32> = (0..LEVELS * WIDTH)
            .map(|i| values(i / WIDTH, i % WIDTH))
            .collect();
        Tensor::from_data(TensorData::new(data, [LEVELS, WIDTH]), &Default::default())
    }

    const FOLDS: [usize; 2] = [1, 2];

    #[test]
    fn a_new_filter_is_the_identity_at_every_quality() {
        let dev = Default::default();
        for fold in FOLDS {
            let f = PostFilter::<NdArray>::new(Shape { width: 16, fold }, &dev);
            assert_eq!(f.shape(), Shape { width: 16, fold });
            let x =
                Tensor::<NdArray, 4>::random([2, 3, 10, 8], Distribution::Uniform(0.0, 1.0), &dev);
            for q in [1.0, 2.5, 8.0] {
                let y = f.forward(x.clone(), q);
                y.into_data().assert_eq(&x.clone().into_data(), true);
            }
        }
    }

    /// A folded filter sees a 2×2 block as one position: a change to one pixel changes the
    /// output within three folded positions (its 7×7 reach), i.e. at most 7 pixels away
    /// on the same side, and nowhere beyond.
    #[test]
    fn a_folded_filter_reaches_three_folded_positions() {
        let dev = Default::default();
        let mut f = PostFilter::<NdArray>::new(Shape { width: 8, fold: 2 }, &dev);
        f.c3.weight = Param::from_tensor(Tensor::random(
            [12, 8, 3, 3],
            Distribution::Normal(0.0, 0.5),
            &dev,
        ));
        let x = Tensor::<NdArray, 4>::zeros([1, 3, 32, 32], &dev);
        let base = f.forward(x.clone(), 4.0);
        let poked = f.forward(
            x.slice_assign(
                [0..1, 0..1, 16..17, 16..17],
                Tensor::ones([1, 1, 1, 1], &dev),
            ),
            4.0,
        );
        let diff: Vec<f32> = (poked - base)
            .abs()
            .sum_dim(1)
            .into_data()
            .to_vec()
            .unwrap();
        let changed: Vec<(usize, usize)> = (0..32 * 32)
            .filter(|&i| diff[i] > 1e-6)
            .map(|i| (i / 32, i % 32))
            .collect();
        assert!(changed.contains(&(16, 16)));
        // Pixel 16 is in folded position 8; positions 5..=11 are pixels 10..=23.
        assert!(
            changed
                .iter()
                .all(|&(r, c)| (10..24).contains(&r) && (10..24).contains(&c))
        );
        assert!(changed.iter().any(|&(r, _)| r < 12) && changed.iter().any(|&(r, _)| r > 21));
    }

    #[test]
    fn widening_keeps_the_function_and_adds_channels_that_can_learn() {
        let dev = Default::default();
        for fold in FOLDS {
            let narrow = Shape { width: 32, fold };
            // A "trained" narrow filter: random last layer and per-level scales, not the
            // identity.
            let mut f = PostFilter::<NdArray>::new(narrow, &dev);
            f.c3.weight = Param::from_tensor(Tensor::random(
                [3 * fold * fold, 32, 3, 3],
                Distribution::Normal(0.0, 0.05),
                &dev,
            ));
            f.scale2 = Param::from_tensor(Tensor::random(
                [LEVELS, 32],
                Distribution::Uniform(0.5, 2.0),
                &dev,
            ));
            let x =
                Tensor::<NdArray, 4>::random([1, 3, 12, 10], Distribution::Uniform(0.0, 1.0), &dev);
            // The outputs come first: they initialise the lazily initialised layers, which a
            // clone taken before would initialise again with other random values.
            let qualities = [1.0, 4.5, 8.0];
            let before: Vec<Vec<f32>> = qualities
                .iter()
                .map(|&q| f.forward(x.clone(), q).into_data().to_vec().unwrap())
                .collect();
            let wide = f.widen(WIDTH);
            assert_eq!(wide.shape(), Shape { width: WIDTH, fold });
            assert_eq!(wide.c2.weight.dims(), [WIDTH, WIDTH, 3, 3]);
            for (q, before) in qualities.into_iter().zip(before) {
                let after = wide
                    .forward(x.clone(), q)
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap();
                let worst = before
                    .iter()
                    .zip(&after)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "widening changed the output by {worst} at q {q}, fold {fold}"
                );
            }
            // The new second-layer channels are live (non-zero weights), so the zero columns
            // of the last layer that read them get gradients and can train.
            let new_rows = wide.c2.weight.val().narrow(0, 32, WIDTH - 32).abs().sum();
            assert!(new_rows.into_scalar() > 0.0);
            // Widening to the same width is a no-op.
            assert_eq!(wide.clone().widen(WIDTH).width(), WIDTH);
        }
    }

    #[test]
    fn level_scales_interpolate_geometrically_between_levels() {
        let t = table(|level, c| (1 + level) as f32 * (1 + c) as f32);
        let at = |q: f32| {
            interpolate_levels(t.clone(), q)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        // Whole levels are the rows; half-way is the geometric mean of the two rows.
        assert!((at(3.0)[5] - 3.0 * 6.0).abs() < 1e-4);
        let mid = at(3.5)[5];
        assert!((mid - (3.0f32 * 4.0).sqrt() * 6.0).abs() < 1e-4, "{mid}");
        assert_eq!(at(0.0), at(1.0));
    }
}
