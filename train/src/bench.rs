//! `ember-train bench`: throughput of the real training step, for comparing backends and
//! machines (and, with `train/bench/pytorch_step.py`, against plain PyTorch on the same shapes).

use std::time::Instant;

use clap::ValueEnum;

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use codec::model::arch::LEVELS;
use codec::model::{Model, Precision};
use codec::weights::ModelFile;

use crate::trainer::{Phase, Step, optimizer};

pub struct BenchJob {
    pub backend: &'static str,
    /// The model file whose step to time, or `None` for a new model. A trained model can be
    /// slower to step than a new one: the shipped model carries a full-resolution post-filter
    /// (about a third of a step's multiply-adds) that a new model does not have, so a training
    /// leg sized from a new model's step (`scripts/train-leg.sh`) overran its minutes.
    pub init: Option<std::path::PathBuf>,
    pub batch: usize,
    pub crop: u32,
    pub steps: usize,
    pub precision: Precision,
}

/// Warm-up steps before timing: the first steps allocate and (on GPUs) pick kernels.
const WARMUP: usize = 2;

impl BenchJob {
    pub fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<(), String> {
        B::seed(&device, 1);
        let model = match &self.init {
            Some(path) => ModelFile::load(path)
                .and_then(|file| file.to_burn::<B>(&device))
                .map_err(|e| e.to_string())?,
            None => Model::<B>::new(&device),
        };
        let mut model = model.with_precision(self.precision);
        let mut optim = optimizer::<B>(1.0);
        let side = self.crop as usize;
        let step = Step;
        // Seconds per phase over the timed steps. The device is synchronised after each
        // phase so that asynchronous backends (CUDA) charge work to the phase that issued it;
        // on the CPU backends every operation is synchronous anyway.
        let mut spent = [0.0f64; 3];
        let mut started = Instant::now();
        for i in 0..WARMUP + self.steps {
            if i == WARMUP {
                B::sync(&device).map_err(|e| format!("device: {e:?}"))?;
                started = Instant::now();
            }
            let x = Tensor::<B, 4>::random(
                [self.batch, 3, side, side],
                Distribution::Uniform(0.0, 1.0),
                &device,
            );
            B::sync(&device).map_err(|e| format!("device: {e:?}"))?;
            let mut mark = Instant::now();
            let (next, stats) = step.run(model, &mut optim, x, i % LEVELS, 1e-4, |p| {
                let _ = B::sync(&device);
                if i >= WARMUP {
                    spent[p as usize] += mark.elapsed().as_secs_f64();
                }
                mark = Instant::now();
            });
            model = next;
            stats.ok_or("non-finite loss in the benchmark")?;
        }
        let per_step = started.elapsed().as_secs_f64() / self.steps as f64;
        let share = |p: Phase| {
            format!(
                "{:.0}%",
                100.0 * spent[p as usize] / self.steps as f64 / per_step
            )
        };
        println!(
            "| backend | precision | batch | crop | s/step | img/s | forward | backward | update |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {} | {}² | {:.3} | {:.1} | {} | {} | {} |",
            self.backend,
            self.precision
                .to_possible_value()
                .expect("no skipped variants")
                .get_name(),
            self.batch,
            self.crop,
            per_step,
            self.batch as f64 / per_step,
            share(Phase::Forward),
            share(Phase::Backward),
            share(Phase::Update),
        );
        Ok(())
    }
}
