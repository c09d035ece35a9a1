//! `ember-train`: train Ember's model, resume runs, and export the model file `ember` loads.

mod average;
mod bench;
mod checkpoint;
mod data;
mod latents;
mod optim;
mod rng;
mod settings;
mod trainer;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use burn::backend::Autodiff;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::{Parser, Subcommand};
use codec::backend::BackendKind;
use codec::model::{Model, Precision};
use codec::weights::ModelFile;

#[derive(Parser)]
#[command(
    name = "ember-train",
    version,
    about = "Train Ember's learned image codec",
    // A later flag overrides an earlier one, so scripts can take extra flags after defaults.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train (or, with --resume, continue) a run; checkpoints go to RUN/checkpoints.
    Run(Box<settings::RunArgs>),
    /// Measure training throughput: images per second of the real training step (forward,
    /// backward, Adam) on synthetic batches, after two warm-up steps.
    Bench {
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        #[arg(long, default_value_t = 256)]
        crop: u32,
        /// Timed steps.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// What the analysis and synthesis transforms compute in (see `run --precision`).
        #[arg(long, value_enum, default_value_t = Precision::Full)]
        precision: Precision,
        /// Time the step of this model file (its post-filter included) instead of a new model's.
        #[arg(long)]
        init: Option<PathBuf>,
    },
    /// Copy a training set as small JPEGs (shorter side --short-side), to carry it to the GPU
    /// machine (see train/GPU.md).
    Pack {
        /// Folder of training images (searched recursively).
        #[arg(default_value = "../shared/datasets/train")]
        data: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 256)]
        short_side: u32,
        #[arg(long, default_value_t = 80)]
        jpeg_quality: u8,
    },
    /// Write the inference model file (f16/f32 weights and integer entropy tables) from a
    /// checkpoint folder or a run folder (its latest checkpoint).
    Export {
        checkpoint: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Write the run's weight average (`run --ema`) instead of its weights.
        #[arg(long)]
        ema: bool,
    },
    /// Write a randomly initialised model file, for testing everything but quality.
    Init {
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    match run(codec::args::parse_or_exit::<Cli>("ember-train").command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ember-train: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Work that runs on any autodiff backend; [`dispatch`] picks it from the command line.
trait AutodiffJob {
    fn go<B: AutodiffBackend>(self, device: B::Device) -> Result<(), String>;
}

struct TrainJob(trainer::Config, Option<(PathBuf, checkpoint::State)>);

impl AutodiffJob for TrainJob {
    fn go<B: AutodiffBackend>(self, device: B::Device) -> Result<(), String> {
        trainer::train::<B>(self.0, self.1, device)
    }
}

impl AutodiffJob for bench::BenchJob {
    fn go<B: AutodiffBackend>(self, device: B::Device) -> Result<(), String> {
        self.run::<B>(device)
    }
}

/// The backend asked for, or the fastest one built.
fn pick_backend(backend: Option<BackendKind>) -> Result<BackendKind, String> {
    backend
        .or_else(codec::backend::default_kind)
        .ok_or_else(|| "no backend built".into())
}

/// Shared by `run` and `bench`: the model takes crops in multiples of its 64-pixel stride.
fn check_batch_and_crop(batch: usize, crop: u32) -> Result<(), String> {
    if batch == 0 || crop < 64 || !crop.is_multiple_of(64) {
        return Err("--batch must be positive and --crop a positive multiple of 64".into());
    }
    Ok(())
}

/// bf16 kernels are what LibTorch (oneDNN on the CPU, cuDNN on NVIDIA GPUs) provides; the
/// other backends are refused up front rather than failing inside a step.
fn check_precision(kind: BackendKind, precision: Precision) -> Result<(), String> {
    match (precision, kind) {
        (Precision::Full, _) => Ok(()),
        #[cfg(feature = "tch")]
        (Precision::Bf16, BackendKind::Tch | BackendKind::TchCuda) => Ok(()),
        (Precision::Bf16, other) => Err(format!(
            "--precision bf16 needs a LibTorch backend (tch or tch-cuda), not {}",
            other.name()
        )),
    }
}

/// Runs `job` on backend `kind`.
fn dispatch(kind: BackendKind, job: impl AutodiffJob) -> Result<(), String> {
    match kind {
        #[cfg(feature = "tch")]
        BackendKind::Tch => job
            .go::<Autodiff<burn::backend::LibTorch>>(burn::backend::libtorch::LibTorchDevice::Cpu),
        #[cfg(feature = "tch")]
        BackendKind::TchCuda => {
            // Every training step convolves tensors of the same shapes (fixed batch and crop),
            // so cuDNN's autotuner, which times the algorithms once per shape and keeps the
            // fastest, pays for itself within the first steps; LibTorch leaves it off.
            tch::Cuda::cudnn_set_benchmark(true);
            job.go::<Autodiff<burn::backend::LibTorch>>(
                burn::backend::libtorch::LibTorchDevice::Cuda(0),
            )
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => job.go::<Autodiff<burn::backend::Cuda>>(Default::default()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => job.go::<Autodiff<burn::backend::Wgpu>>(Default::default()),
        #[cfg(feature = "ndarray")]
        BackendKind::Ndarray => job.go::<Autodiff<burn::backend::NdArray>>(Default::default()),
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "backend {} is not built into this binary",
            other.name()
        )),
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Run(args) => {
            ctrlc::set_handler(|| trainer::STOP.store(true, std::sync::atomic::Ordering::Relaxed))
                .map_err(|e| format!("cannot install signal handler: {e}"))?;
            let backend = pick_backend(args.backend)?;
            let (config, resume) = (*args).config()?;
            check_batch_and_crop(config.batch, config.crop)?;
            check_precision(backend, config.precision)?;
            if config.part == trainer::Part::EntropyModel {
                latents::check_size(config.latent_crops, config.crop)?;
            }
            dispatch(backend, TrainJob(config, resume))
        }
        Command::Bench {
            backend,
            batch,
            crop,
            steps,
            precision,
            init,
        } => {
            check_batch_and_crop(batch, crop)?;
            if steps == 0 {
                return Err("--steps must be positive".into());
            }
            let kind = pick_backend(backend)?;
            check_precision(kind, precision)?;
            dispatch(
                kind,
                bench::BenchJob {
                    backend: kind.name(),
                    init,
                    batch,
                    crop,
                    steps,
                    precision,
                },
            )
        }
        Command::Pack {
            data,
            output,
            short_side,
            jpeg_quality,
        } => {
            if short_side < 64 || !(1..=100).contains(&jpeg_quality) {
                return Err("--short-side must be at least 64 and --jpeg-quality 1-100".into());
            }
            let (n, bytes) = data::pack(&data, &output, short_side, jpeg_quality)?;
            println!(
                "{n} images, {:.1} MB, in {}",
                bytes as f64 / 1e6,
                output.display()
            );
            Ok(())
        }
        Command::Export {
            checkpoint,
            output,
            ema,
        } => {
            let ckpt = if checkpoint.join("state.json").exists() {
                checkpoint.clone()
            } else {
                checkpoint::latest(&checkpoint)
                    .ok_or_else(|| format!("no checkpoint in {}", checkpoint.display()))?
            };
            let file = codec::backend::run(
                codec::backend::default_kind().ok_or("no backend built")?,
                ExportJob { ckpt, ema },
            )??;
            file.save(&output)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            eprintln!("wrote {} (weights {:016x})", output.display(), file.hash);
            Ok(())
        }
        Command::Init { output, seed } => {
            let file = codec::backend::run(
                codec::backend::default_kind().ok_or("no backend built")?,
                InitJob(seed),
            )?;
            file.save(&output)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            eprintln!(
                "wrote {} (random weights {:016x})",
                output.display(),
                file.hash
            );
            Ok(())
        }
    }
}

struct ExportJob {
    ckpt: PathBuf,
    /// The weight average instead of the weights.
    ema: bool,
}

impl codec::backend::Job for ExportJob {
    type Output = Result<ModelFile, String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let model = checkpoint::load_model::<B>(&self.ckpt, &device)?;
        let model = if self.ema {
            let mean = checkpoint::load_average::<B>(&self.ckpt, &device)?.ok_or_else(|| {
                format!(
                    "{} holds no weight average (train with --ema to keep one)",
                    self.ckpt.display()
                )
            })?;
            average::apply(model, mean).ok_or_else(|| {
                format!(
                    "the weight average in {} is of another model than its weights",
                    self.ckpt.display()
                )
            })?
        } else {
            model
        };
        Ok(ModelFile::from_model(&model))
    }
}

struct InitJob(u64);

impl codec::backend::Job for InitJob {
    type Output = ModelFile;
    fn run<B: Backend>(self, device: B::Device) -> ModelFile {
        B::seed(&device, self.0);
        ModelFile::from_model(&Model::<B>::new(&device))
    }
}
