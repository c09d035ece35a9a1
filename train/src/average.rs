//! An exponential moving average of the weights (`ember-train run --ema DECAY`), kept beside
//! the trained weights and exported instead of them with `ember-train export --ema`.
//!
//! Why: a CPU leg takes a few hundred steps of 8 crops each, so every step's update carries
//! the noise of one small batch, and the weights a leg ends on are its last batches' as much
//! as the run's. The average over the last `1 / (1 − DECAY)` steps or so keeps the direction
//! they share and cancels much of the rest, at the cost of one more copy of the weights and
//! two vector operations per step. A run keeps both, so one leg measures the average against
//! its own last weights on the same data, step for step.
//!
//! The average is one flat vector over every float parameter in the order the model visits
//! them (as [`crate::optim::FlatAdam`] keeps its moments), written to each checkpoint as
//! `average.mpk`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// The running average of a model's weights.
#[derive(Clone, Debug)]
pub struct Average<B: Backend> {
    decay: f32,
    mean: Tensor<B, 1>,
}

impl<B: Backend> Average<B> {
    /// An average that starts at `model`'s weights.
    pub fn start<M: Module<B>>(model: &M, decay: f32) -> Self {
        Self {
            decay,
            mean: flatten(model),
        }
    }

    /// An average read back from a checkpoint; `None` where `mean` does not fit `model`.
    pub fn resume<M: Module<B>>(model: &M, decay: f32, mean: Tensor<B, 1>) -> Option<Self> {
        (mean.dims()[0] == model.num_params()).then_some(Self { decay, mean })
    }

    /// Moves the average towards `model`'s weights after a step: `mean ← d·mean + (1 − d)·w`.
    pub fn update<M: Module<B>>(&mut self, model: &M) {
        let w = flatten(model);
        self.mean = self.mean.clone().mul_scalar(self.decay) + w.mul_scalar(1.0 - self.decay);
    }

    /// The flat vector, for the checkpoint.
    pub fn mean(&self) -> &Tensor<B, 1> {
        &self.mean
    }
}

/// `model` with its float parameters replaced by `mean`'s slices, in visiting order; `None`
/// where `mean` has another length than the model has parameters.
pub fn apply<B: Backend, M: Module<B>>(model: M, mean: Tensor<B, 1>) -> Option<M> {
    (mean.dims()[0] == model.num_params()).then(|| model.map(&mut Replace { mean, offset: 0 }))
}

/// Every float parameter of `model`, flattened and concatenated in visiting order.
fn flatten<B: Backend, M: Module<B>>(model: &M) -> Tensor<B, 1> {
    let mut parts = Flatten(Vec::new());
    model.visit(&mut parts);
    Tensor::cat(parts.0, 0)
}

struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Replace<B: Backend> {
    mean: Tensor<B, 1>,
    offset: usize,
}

impl<B: Backend> ModuleMapper<B> for Replace<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let n = tensor.shape().num_elements();
        let value = self
            .mean
            .clone()
            .slice(self.offset..self.offset + n)
            .reshape(tensor.dims());
        self.offset += n;
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::TensorData;

    type Tb = NdArray;

    fn values(m: &Linear<Tb>) -> Vec<f32> {
        flatten(m).into_data().to_vec::<f32>().unwrap()
    }

    fn scaled(m: &Linear<Tb>, by: f32) -> Linear<Tb> {
        let v: Vec<f32> = values(m).iter().map(|x| x * by).collect();
        let n = v.len();
        apply(
            m.clone(),
            Tensor::from_data(TensorData::new(v, [n]), &Default::default()),
        )
        .unwrap()
    }

    #[test]
    fn averages_each_weight_geometrically_and_applies_in_visiting_order() {
        let device = Default::default();
        let m = LinearConfig::new(3, 2).init::<Tb>(&device);
        let w0 = values(&m);
        let mut avg = Average::start(&m, 0.75);
        // Two steps to 2·w, then the exported model holds 0.75²·w + (1 − 0.75²)·2·w.
        let m2 = scaled(&m, 2.0);
        avg.update(&m2);
        avg.update(&m2);
        let exported = apply(m.clone(), avg.mean().clone()).unwrap();
        let want: Vec<f32> = w0.iter().map(|w| w * (0.5625 + 2.0 * 0.4375)).collect();
        for (got, want) in values(&exported).iter().zip(&want) {
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        // Weight and bias come back in their own places and shapes.
        assert_eq!(exported.weight.dims(), m.weight.dims());
        assert_eq!(
            exported.bias.as_ref().unwrap().dims(),
            m.bias.as_ref().unwrap().dims()
        );
    }

    #[test]
    fn refuses_a_vector_of_another_model() {
        let device = Default::default();
        let m = LinearConfig::new(3, 2).init::<Tb>(&device);
        let other = LinearConfig::new(4, 2).init::<Tb>(&device);
        assert!(apply(m.clone(), flatten(&other)).is_none());
        assert!(Average::resume(&m, 0.9, flatten(&other)).is_none());
        assert!(Average::resume(&m, 0.9, flatten(&m)).is_some());
    }
}
