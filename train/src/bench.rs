//! `ember-train bench`: throughput of the real training step, for comparing backends and
//! machines (and, with `train/bench/pytorch_step.py`, against plain PyTorch on the same shapes).

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use codec::model::Model;
use codec::model::arch::LEVELS;

use crate::trainer::{Step, optimizer};

pub struct BenchJob {
    pub backend: &'static str,
    pub batch: usize,
    pub crop: u32,
    pub steps: usize,
}

/// Warm-up steps before timing: the first steps allocate and (on GPUs) pick kernels.
const WARMUP: usize = 2;

impl BenchJob {
    pub fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<(), String> {
        B::seed(&device, 1);
        let mut model = Model::<B>::new(&device);
        let mut optim = optimizer::<B>(1.0);
        let side = self.crop as usize;
        let step = Step {
            pixels: (self.batch * side * side) as f32,
        };
        let mut started = Instant::now();
        for i in 0..WARMUP + self.steps {
            if i == WARMUP {
                started = Instant::now();
            }
            let x = Tensor::<B, 4>::random(
                [self.batch, 3, side, side],
                Distribution::Uniform(0.0, 1.0),
                &device,
            );
            let (next, stats) = step.run(model, &mut optim, x, i % LEVELS, 1e-4);
            model = next;
            stats.ok_or("non-finite loss in the benchmark")?;
        }
        // Reading a weight back waits for the last update to finish on asynchronous devices.
        let _ = model.gain.val().sum().into_scalar();
        let per_step = started.elapsed().as_secs_f64() / self.steps as f64;
        println!("| backend | batch | crop | s/step | img/s |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {}² | {:.3} | {:.1} |",
            self.backend,
            self.batch,
            self.crop,
            per_step,
            self.batch as f64 / per_step
        );
        Ok(())
    }
}
