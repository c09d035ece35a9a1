//! The analysis and synthesis transforms that `bmshj2018-hyperprior`, `mbt2018-mean` and
//! `mbt2018` share, in Burn, with the weights of a CompressAI checkpoint.
//!
//! `g_a`: four 5×5 convolutions of stride 2 with a GDN after each of the first three; `g_s`:
//! four 5×5 transposed convolutions of stride 2 (padding 2, output padding 1) with an inverse
//! GDN after each of the first three. CompressAI's GDN is the full one,
//! `y = x / √(β + γ·x²)` (its inverse multiplies), unlike the simplified GDN of Ember's own
//! model ([`crate::model::layers::Gdn`]); its `β` and `γ` are stored reparametrized, and are
//! recovered here as CompressAI computes them: `max(stored, bound)² − pedestal`, with the
//! bound and the pedestal the checkpoint carries.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::{Sizes, StateDict};

/// CompressAI's generalized divisive normalization, or its inverse.
#[derive(Module, Debug)]
pub struct Gdn<B: Backend> {
    /// `[c]`, as used (not reparametrized).
    pub beta: Param<Tensor<B, 1>>,
    /// `[c_out, c_in]`, as used.
    pub gamma: Param<Tensor<B, 2>>,
    inverse: bool,
}

impl<B: Backend> Gdn<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        let squares = x.clone().powi_scalar(2).reshape([n, c, h * w]);
        let gamma = self.gamma.val().unsqueeze_dim::<3>(0).expand([n, c, c]);
        let beta = self.beta.val().reshape([1, c, 1]);
        let norm = (gamma.matmul(squares) + beta).sqrt().reshape([n, c, h, w]);
        if self.inverse { x * norm } else { x / norm }
    }
}

/// `g_a` of the imported architectures.
#[derive(Module, Debug)]
pub struct Analysis<B: Backend> {
    pub convs: Vec<Conv2d<B>>,
    pub gdns: Vec<Gdn<B>>,
}

impl<B: Backend> Analysis<B> {
    pub fn forward(&self, mut x: Tensor<B, 4>) -> Tensor<B, 4> {
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(x);
            if let Some(gdn) = self.gdns.get(i) {
                x = gdn.forward(x);
            }
        }
        x
    }
}

/// `g_s` of the imported architectures.
#[derive(Module, Debug)]
pub struct Synthesis<B: Backend> {
    pub deconvs: Vec<ConvTranspose2d<B>>,
    pub gdns: Vec<Gdn<B>>,
}

impl<B: Backend> Synthesis<B> {
    pub fn forward(&self, mut x: Tensor<B, 4>) -> Tensor<B, 4> {
        for (i, deconv) in self.deconvs.iter().enumerate() {
            x = deconv.forward(x);
            if let Some(gdn) = self.gdns.get(i) {
                x = gdn.forward(x);
            }
        }
        x
    }
}

/// Both transforms of a checked checkpoint of `sizes`.
pub fn load<B: Backend>(
    dict: &StateDict,
    Sizes { n, m }: Sizes,
    device: &B::Device,
) -> Result<(Analysis<B>, Synthesis<B>), String> {
    let tensor = |key: &str, shape: &[usize]| -> Result<TensorData, String> {
        Ok(TensorData::new(dict.values(key)?, shape.to_vec()))
    };
    let param = |key: &str, shape: &[usize]| -> Result<Param<Tensor<B, 1>>, String> {
        Ok(Param::from_data(tensor(key, shape)?, device))
    };
    let chans = [3, n, n, n, m];
    let mut g_a = Analysis {
        convs: Vec::new(),
        gdns: Vec::new(),
    };
    let mut g_s = Synthesis {
        deconvs: Vec::new(),
        gdns: Vec::new(),
    };
    for i in 0..4 {
        let (cin, cout) = (chans[i], chans[i + 1]);
        let at = format!("g_a.{}", 2 * i);
        let mut conv = Conv2dConfig::new([cin, cout], [5, 5])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
            .init::<B>(device);
        conv.weight =
            Param::from_data(tensor(&format!("{at}.weight"), &[cout, cin, 5, 5])?, device);
        conv.bias = Some(param(&format!("{at}.bias"), &[cout])?);
        g_a.convs.push(conv);

        let (cin, cout) = (chans[4 - i], chans[3 - i]);
        let at = format!("g_s.{}", 2 * i);
        let mut deconv = ConvTranspose2dConfig::new([cin, cout], [5, 5])
            .with_stride([2, 2])
            .with_padding([2, 2])
            .with_padding_out([1, 1])
            .init::<B>(device);
        deconv.weight =
            Param::from_data(tensor(&format!("{at}.weight"), &[cin, cout, 5, 5])?, device);
        deconv.bias = Some(param(&format!("{at}.bias"), &[cout])?);
        g_s.deconvs.push(deconv);

        if i < 3 {
            g_a.gdns
                .push(gdn(dict, &format!("g_a.{}", 2 * i + 1), n, false, device)?);
            g_s.gdns
                .push(gdn(dict, &format!("g_s.{}", 2 * i + 1), n, true, device)?);
        }
    }
    Ok((g_a, g_s))
}

/// The GDN stored under `at`, its `β` and `γ` out of CompressAI's reparametrization.
fn gdn<B: Backend>(
    dict: &StateDict,
    at: &str,
    c: usize,
    inverse: bool,
    device: &B::Device,
) -> Result<Gdn<B>, String> {
    let used = |name: &str| -> Result<Vec<f32>, String> {
        let scalar = |what: &str| -> Result<f32, String> {
            let key = format!("{at}.{name}_reparam.{what}");
            match dict.values(&key)?[..] {
                [v] => Ok(v),
                _ => Err(format!("{key} is not one number")),
            }
        };
        let (bound, pedestal) = (scalar("lower_bound.bound")?, scalar("pedestal")?);
        Ok(dict
            .values(&format!("{at}.{name}"))?
            .into_iter()
            .map(|v| v.max(bound).powi(2) - pedestal)
            .collect())
    };
    Ok(Gdn {
        beta: Param::from_data(TensorData::new(used("beta")?, [c]), device),
        gamma: Param::from_data(TensorData::new(used("gamma")?, [c, c]), device),
        inverse,
    })
}

/// A stride-2, 5×5 transposed convolution (padding 2, output padding 1: CompressAI's `deconv`)
/// rewritten as the 3×3 stride-1 convolution to four times the channels that, followed by
/// depth-to-space ([`crate::model::layers::depth_to_space`]), computes the same map: Ember's
/// [`crate::model::layers::Up`] layout, which [`crate::detnet`] evaluates deterministically and
/// which runs faster than a transposed convolution on every backend measured.
///
/// Output pixel `(2r + a, 2s + b)` of the transposed convolution sums input pixel `(r + dy −
/// 1, s + dx − 1)` times tap `(4 − 2·dy + a, 4 − 2·dx + b)`, so phase `(a, b)` of output
/// channel `o` becomes channel `4o + 2a + b` of the 3×3 kernel, with the taps that fall
/// outside the 5×5 kernel zero. `weight` is `[cin, cout, 5, 5]`; returns the `[4·cout, cin, 3,
/// 3]` kernel and its bias.
pub fn as_upsampling(
    weight: &[f32],
    bias: &[f32],
    cin: usize,
    cout: usize,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(weight.len(), cin * cout * 25, "a [cin, cout, 5, 5] kernel");
    assert_eq!(bias.len(), cout, "one bias per output channel");
    let mut kernel = vec![0.0; 4 * cout * cin * 9];
    for o in 0..cout {
        for (a, b) in [(0usize, 0usize), (0, 1), (1, 0), (1, 1)] {
            let phase = 4 * o + 2 * a + b;
            for i in 0..cin {
                for dy in 0..3 {
                    for dx in 0..3 {
                        let ky = 4 + a as isize - 2 * dy as isize;
                        let kx = 4 + b as isize - 2 * dx as isize;
                        if (0..5).contains(&ky) && (0..5).contains(&kx) {
                            kernel[((phase * cin + i) * 3 + dy) * 3 + dx] =
                                weight[((i * cout + o) * 5 + ky as usize) * 5 + kx as usize];
                        }
                    }
                }
            }
        }
    }
    let bias = bias.iter().flat_map(|&v| [v; 4]).collect();
    (kernel, bias)
}

#[cfg(test)]
mod tests {
    use super::super::{Arch, tests::fixture};
    use super::*;
    use burn::backend::NdArray;

    type Tb = NdArray;

    /// PSNR between two tensors of values in about `[0, 1]`, or for latents, of `b`'s range.
    fn psnr(a: &Tensor<Tb, 4>, b: &Tensor<Tb, 4>) -> f64 {
        let (a, b) = (
            a.to_data().to_vec::<f32>().unwrap(),
            b.to_data().to_vec::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        let peak = b.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let mse = a
            .iter()
            .zip(&b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        10.0 * (peak * peak / mse.max(1e-30)).log10()
    }

    /// A transposed convolution and its rewrite as a 3×3 convolution plus depth-to-space
    /// compute the same map, at odd sizes too.
    #[test]
    fn a_transposed_convolution_is_a_convolution_then_depth_to_space() {
        use burn::tensor::Distribution;
        let device = Default::default();
        let (cin, cout) = (3, 2);
        let mut deconv = ConvTranspose2dConfig::new([cin, cout], [5, 5])
            .with_stride([2, 2])
            .with_padding([2, 2])
            .with_padding_out([1, 1])
            .init::<Tb>(&device);
        deconv.bias = Some(Param::from_tensor(Tensor::random(
            [cout],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        )));
        let x = Tensor::<Tb, 4>::random([2, cin, 5, 7], Distribution::Uniform(-1.0, 1.0), &device);
        let want = deconv.forward(x.clone());
        let values = |t: Tensor<Tb, 1>| t.into_data().to_vec::<f32>().unwrap();
        let (kernel, bias) = as_upsampling(
            &values(deconv.weight.val().reshape([cin * cout * 25])),
            &values(deconv.bias.as_ref().unwrap().val()),
            cin,
            cout,
        );
        let mut conv = Conv2dConfig::new([cin, 4 * cout], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init::<Tb>(&device);
        conv.weight = Param::from_data(TensorData::new(kernel, [4 * cout, cin, 3, 3]), &device);
        conv.bias = Some(Param::from_data(TensorData::new(bias, [4 * cout]), &device));
        let got = crate::model::layers::depth_to_space(conv.forward(x));
        assert_eq!(got.dims(), [2, cout, 10, 14]);
        assert!(psnr(&got, &want) > 100.0, "{:.1} dB", psnr(&got, &want));
    }

    /// On CompressAI's own output for a test picture (`NAME.ref.pt`), Ember's transforms with
    /// the checkpoint's weights give the same latent and the same reconstruction.
    #[test]
    fn the_transforms_compute_what_compressai_computes() {
        let device = Default::default();
        for arch in Arch::ALL {
            let dict = StateDict::read(&fixture(arch)).unwrap();
            let sizes = dict.check(arch).unwrap();
            let (g_a, g_s) = load::<Tb>(&dict, sizes, &device).unwrap();
            let refs = StateDict::read(&fixture(arch).with_extension("").with_extension("ref.pt"))
                .unwrap();
            let get = |key: &str, shape: [usize; 4]| {
                Tensor::<Tb, 4>::from_data(
                    TensorData::new(refs.values(key).unwrap(), shape),
                    &device,
                )
            };
            let x = get("x", [1, 3, 32, 48]);
            let y = get("y", [1, sizes.m, 2, 3]);
            let x_hat = get("x_hat", [1, 3, 32, 48]);
            let ours = g_a.forward(x);
            assert!(
                psnr(&ours, &y) > 80.0,
                "{}: g_a {:.1} dB",
                arch.name(),
                psnr(&ours, &y)
            );
            let ours = g_s.forward(y.round());
            let db = psnr(&ours, &x_hat);
            assert!(db > 80.0, "{}: g_s {db:.1} dB", arch.name());
        }
    }
}
