//! The factorized prior of the hyper-latent `z` (Ballé et al. 2018's non-parametric density).
//!
//! Each channel's cumulative is a small monotone network `c(x) = σ(f(x))`. Training uses the
//! likelihood `c(x + ½) − c(x − ½)` of noisy `z`. For coding, [`Bottleneck::export_tables`]
//! evaluates the trained density once over the integers and quantizes it to the integer tables
//! that the model file stores; decoders never evaluate `f`.

use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, softplus};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use entropy::FactorizedTables;

/// Widths of the density network: 1 → 3 → 3 → 3 → 3 → 1 (as CompressAI's default).
const FILTERS: [usize; 6] = [1, 3, 3, 3, 3, 1];
/// Probability mass left to the escape symbol on each side when choosing a table's range.
const TAIL: f64 = 1e-9;
/// Largest |value| a table covers; rarer values escape.
const MAX_RANGE: i32 = 1024;

#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// `[c, FILTERS[i+1], FILTERS[i]]`, made positive by softplus.
    pub matrices: Vec<Param<Tensor<B, 3>>>,
    /// `[c, FILTERS[i+1], 1]`.
    pub biases: Vec<Param<Tensor<B, 3>>>,
    /// `[c, FILTERS[i+1], 1]`, squashed by tanh; one fewer than the layers.
    pub factors: Vec<Param<Tensor<B, 3>>>,
}

impl<B: Backend> Bottleneck<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        let init_scale: f64 = 10.0;
        let scale = init_scale.powf(1.0 / (FILTERS.len() - 1) as f64);
        let (mut matrices, mut biases, mut factors) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..FILTERS.len() - 1 {
            let init = (1.0 / scale / FILTERS[i + 1] as f64).exp_m1().ln();
            matrices.push(Param::from_tensor(Tensor::full(
                [channels, FILTERS[i + 1], FILTERS[i]],
                init,
                device,
            )));
            biases.push(Param::from_tensor(Tensor::random(
                [channels, FILTERS[i + 1], 1],
                Distribution::Uniform(-0.5, 0.5),
                device,
            )));
            if i + 2 < FILTERS.len() {
                factors.push(Param::from_tensor(Tensor::zeros(
                    [channels, FILTERS[i + 1], 1],
                    device,
                )));
            }
        }
        Self {
            matrices,
            biases,
            factors,
        }
    }

    /// `f(x)` for `x: [c, 1, n]`, returning `[c, 1, n]`.
    fn logits_cumulative(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for (i, (m, b)) in self.matrices.iter().zip(&self.biases).enumerate() {
            x = softplus(m.val(), 1.0).matmul(x) + b.val();
            if let Some(f) = self.factors.get(i) {
                x = x.clone() + f.val().tanh() * x.tanh();
            }
        }
        x
    }

    /// Likelihood of each element of `z: [n, c, h, w]` (noisy or rounded), bounded below by 1e-9.
    pub fn likelihood(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = z.dims();
        let flat = z.permute([1, 0, 2, 3]).reshape([c, 1, n * h * w]);
        // `flat` stays alive (and so shared) through both shifts. burn-tch 0.21 gives a permuted
        // view its own ownership count although it shares the caller's buffer (burn #5375,
        // fixed after 0.21), so a shift applied to the last handle of `flat` ran in place and
        // added ½ to the caller's `z` whenever the permute needed no copy (batch of one): the
        // rate estimate then saw ẑ + ½ and overstated the size by up to 35% per section.
        let lower = self.logits_cumulative(flat.clone().sub_scalar(0.5));
        let upper = self.logits_cumulative(flat.clone().add_scalar(0.5));
        drop(flat);
        // Evaluate in the tail where σ is accurate: flip signs where both logits are positive.
        let sign = (lower.clone() + upper.clone()).sign().neg();
        let lik = (sigmoid(upper * sign.clone()) - sigmoid(lower * sign)).abs();
        lik.clamp_min(1e-9)
            .reshape([c, n, h, w])
            .permute([1, 0, 2, 3])
    }

    /// Quantizes each channel's density to an integer table over the values whose mass is not
    /// negligible. Runs once at export; the result is stored with the model.
    pub fn export_tables(&self) -> FactorizedTables {
        let read = |p: &Param<Tensor<B, 3>>| -> (Vec<f64>, [usize; 3]) {
            let t = p.val();
            let dims = t.dims();
            (
                t.into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("f32 data")
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                dims,
            )
        };
        let matrices: Vec<_> = self.matrices.iter().map(read).collect();
        let biases: Vec<_> = self.biases.iter().map(read).collect();
        let factors: Vec<_> = self.factors.iter().map(read).collect();
        let channels = matrices[0].1[0];
        let (mut offsets, mut pmfs, mut tails) = (Vec::new(), Vec::new(), Vec::new());
        for ch in 0..channels {
            let cdf = |x: f64| -> f64 {
                let mut v = vec![x];
                for (i, (m, b)) in matrices.iter().zip(&biases).enumerate() {
                    let [_, rows, cols] = m.1;
                    let mut out = vec![0.0; rows];
                    for (r, o) in out.iter_mut().enumerate() {
                        let mut acc = b.0[ch * rows + r];
                        for (k, vk) in v.iter().enumerate() {
                            let raw = m.0[(ch * rows + r) * cols + k];
                            acc += (raw.exp().ln_1p()) * vk; // softplus
                        }
                        *o = acc;
                    }
                    if let Some(f) = factors.get(i) {
                        for (r, o) in out.iter_mut().enumerate() {
                            *o += f.0[ch * rows + r].tanh() * o.tanh();
                        }
                    }
                    v = out;
                }
                1.0 / (1.0 + (-v[0]).exp())
            };
            let mut lo = -MAX_RANGE;
            while lo < 0 && cdf(f64::from(lo) + 0.5) < TAIL {
                lo += 1;
            }
            let mut hi = MAX_RANGE;
            while hi > lo && 1.0 - cdf(f64::from(hi) - 0.5) < TAIL {
                hi -= 1;
            }
            let pmf: Vec<f64> = (lo..=hi)
                .map(|v| cdf(f64::from(v) + 0.5) - cdf(f64::from(v) - 0.5))
                .collect();
            let tail = cdf(f64::from(lo) - 0.5) + (1.0 - cdf(f64::from(hi) + 0.5));
            offsets.push(lo);
            pmfs.push(pmf);
            tails.push(tail);
        }
        FactorizedTables::from_pmfs(&offsets, &pmfs, &tails)
            .expect("one table per channel, each 1..=2049 values")
    }
}
