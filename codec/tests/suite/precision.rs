//! Training with the transforms in bf16 ([`Precision::Bf16`]) must follow the same gradient
//! as f32, or the speed it buys is spent on a different optimisation. LibTorch only: it is
//! the backend that runs bf16 kernels on the CPU.
#![cfg(feature = "tch")]

use std::path::Path;

use burn::backend::libtorch::LibTorchDevice;
use burn::backend::{Autodiff, LibTorch};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use codec::image_io::Planar;
use codec::model::{Model, Precision};
use rusty_fork::rusty_fork_test;

use crate::common::shipped_model;

type B = Autodiff<LibTorch>;

/// Every float parameter's gradient, flattened, with the path of the module holding it.
struct Grads<'a> {
    grads: &'a <B as AutodiffBackend>::Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor<B> for Grads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let g = param
            .grad(self.grads)
            .map(|g| g.into_data().to_vec::<f32>().unwrap())
            .unwrap_or_default();
        self.out.push((self.path.join("."), g));
    }
}

/// The training loss at quality 4 and every parameter's gradient. The rate's noise comes
/// from LibTorch's generator, seeded alike for both passes. That generator is process-wide and
/// every tch model built anywhere in the suite draws from it while initialising, so the test
/// runs in a process of its own (below): sharing one, a concurrent test's draws between the
/// seed and the noise gave the two passes different noise and the factorized bottleneck's
/// biases gradient cosines of 0.18-0.34 in two of three runs of the CI command.
fn loss_and_grads(model: &Model<B>, x: Tensor<B, 4>) -> (f64, Vec<(String, Vec<f32>)>) {
    B::seed(&LibTorchDevice::Cpu, 5);
    let loss = model.forward(x.clone(), 4.0, true).rd_loss(x, 0.013).loss;
    let value = f64::from(loss.clone().into_scalar());
    let grads = loss.backward();
    let mut visitor = Grads {
        grads: &grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    (value, visitor.out)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

rusty_fork_test! {
    #[test]
    fn bf16_transforms_follow_the_f32_gradient() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let device = LibTorchDevice::Cpu;
        let model = shipped_model().to_burn::<B>(&device).unwrap();
        let image = Planar::load(&root.join("testdata/golden/rgb-130x70-q8.png")).unwrap();
        let (pixels, w, h) = image.padded(64);
        let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [1, 3, h, w]), &device);

        let (loss_full, full) = loss_and_grads(&model, x.clone());
        let (loss_half, half) = loss_and_grads(&model.clone().with_precision(Precision::Bf16), x);
        // Close, and not equal: the bf16 pass did run in bf16.
        assert!(
            (loss_half - loss_full).abs() < 0.01 * loss_full && loss_half != loss_full,
            "loss {loss_half} in bf16 against {loss_full} in f32"
        );
        assert_eq!(full.len(), half.len());
        let all = |g: &[(String, Vec<f32>)]| g.iter().flat_map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let overall = cosine(&all(&full), &all(&half));
        eprintln!("loss {loss_full:.5} / {loss_half:.5}, gradient cosine {overall:.6}");
        assert!(overall > 0.999, "gradient cosine {overall}");
        // Each tensor follows its own f32 direction too, not only the sum of them. (Measured
        // here with the shipped model e23f327c775a288e, the same in every run now that the
        // test has its process to itself: 0.962 at worst, `slices.4.channel.c2.weight`
        // (0.952 on `slices.3.spatial.bias` with 72d4c2d8ccb54dca); a latent that bf16 moves across a
        // rounding edge changes what the synthesis sees by a whole step, so agreement is not
        // exact even where the arithmetic hardly differs.)
        let (worst, name) = full
            .iter()
            .zip(&half)
            .map(|((name, f), (_, h))| (cosine(f, h), name))
            .fold(
                (f64::INFINITY, ""),
                |a, (c, n)| if c < a.0 { (c, n) } else { a },
            );
        eprintln!("worst tensor: {name}, cosine {worst:.4}");
        assert!(worst > 0.95, "{name}: gradient cosine {worst}");
    }
}
