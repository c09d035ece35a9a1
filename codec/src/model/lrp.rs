//! Latent residual prediction (LRP, Minnen & Singh 2020): a small network that predicts, from
//! everything the decoder has, the part of the quantization error `y − ŷ` that is predictable,
//! and adds it to `ŷ` before the synthesis transform: `ŷ' = ŷ + ½·tanh(f(ŷ, hyper))`.
//!
//! Why it pays: rounding throws away where `y` lay inside its quantization bin, and at low
//! rates most symbols are zero, so that loss is a large part of the distortion. Neighbouring
//! latents and the hyper features say where in the bin `y` probably was; the synthesis
//! transform alone cannot use the hyper features, which it never sees. The `½·tanh` keeps the
//! correction inside one bin.
//!
//! Where it sits, and why not inside the entropy model as in Minnen & Singh: there each slice's
//! corrected `ŷ` feeds the later slices' contexts, which would put this network in the
//! deterministic path (`crate::detnet`) and `tanh` is transcendental. Here no entropy parameter
//! depends on it: it runs once, after every slice is decoded, in float like the synthesis
//! transform, so it costs the deterministic path nothing, and it sees the whole of `ŷ` (all
//! channels, every neighbour) instead of only the slices decoded so far. A stream's symbols do
//! not depend on it; its reconstruction does, as on the synthesis.
//!
//! The last convolution starts at zero, so a new predictor changes nothing until trained
//! (`ember-train run --lrp`, with `--decoder` or the whole model): a model gains one without
//! losing what it had. It is trained for the picture, through the synthesis, not for the
//! latent: a predictor trained alone to bring `ŷ` closer to `y` (1% less squared error after
//! 600 steps) made the pictures 0.01 dB worse, because this synthesis was trained on plainly
//! rounded latents and expects them (train/LOG.md).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, tanh};
use burn::tensor::backend::Backend;

use super::arch::{HYPER, LRP_WIDTH, M};
use super::layers::conv;

#[derive(Module, Debug)]
pub struct Lrp<B: Backend> {
    pub c1: Conv2d<B>,
    pub c2: Conv2d<B>,
    pub c3: Conv2d<B>,
}

/// Kernel of each of the three convolutions. Three 3×3 layers see three latent pixels each
/// way, within the decoder's tile margin (`crate::compress::MARGIN`), so tiling changes the
/// prediction only by float rounding.
const K: usize = 3;

impl<B: Backend> Lrp<B> {
    /// A predictor that predicts nothing (its last layer is zero) until trained.
    pub fn new(device: &B::Device) -> Self {
        let mut c3 = conv(LRP_WIDTH, M, K, 1, device);
        c3.weight = Param::from_tensor(Tensor::zeros([M, LRP_WIDTH, K, K], device));
        c3.bias = Some(Param::from_tensor(Tensor::zeros([M], device)));
        Self {
            c1: conv(M + HYPER, LRP_WIDTH, K, 1, device),
            c2: conv(LRP_WIDTH, LRP_WIDTH, K, 1, device),
            c3,
        }
    }

    /// `ŷ'` from the gained `ŷ` (`[n, M, h, w]`) and the hyper features (`[n, HYPER, h, w]`).
    pub fn forward(&self, y_hat: Tensor<B, 4>, hyper: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = relu(self.c1.forward(Tensor::cat(vec![y_hat.clone(), hyper], 1)));
        let h = relu(self.c2.forward(h));
        y_hat + tanh(self.c3.forward(h)).mul_scalar(0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::Distribution;

    #[test]
    fn a_new_predictor_leaves_the_latent_as_it_is_and_can_learn() {
        type B = Autodiff<NdArray>;
        let dev = Default::default();
        let lrp = Lrp::<B>::new(&dev);
        let y = Tensor::<B, 4>::random([1, M, 6, 5], Distribution::Normal(0.0, 3.0), &dev).round();
        let hyper = Tensor::<B, 4>::random([1, HYPER, 6, 5], Distribution::Default, &dev);
        let out = lrp.forward(y.clone(), hyper);
        assert_eq!(
            out.clone().into_data().to_vec::<f32>().unwrap(),
            y.clone().into_data().to_vec::<f32>().unwrap()
        );
        // The zero last layer still gets a gradient, so training moves it off zero.
        let grads = (out - y.add_scalar(0.25)).powi_scalar(2).sum().backward();
        let g = lrp
            .c3
            .weight
            .grad(&grads)
            .expect("the last layer has a gradient");
        assert!(g.abs().sum().into_scalar() > 0.0);
    }
}
