//! The training loop: rate-distortion loss over random crops, λ sampled per batch across the
//! quality levels, Adam with warm-up and cosine decay, gradient clipping, a NaN/inf guard,
//! periodic validation in real coded bytes that stops a run whose model falls apart, and
//! time-based checkpoints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::model::arch::{LAMBDAS, LEVELS};
use codec::model::post_filter::Shape;
use codec::model::{Model, Precision, RdLoss};
use codec::weights::ModelFile;
use indicatif::{ProgressBar, ProgressStyle};

use crate::average::Average;
use crate::checkpoint::{self, State};
use crate::data::{self, Dataset};
use crate::latents::{Crops, LatentCache};
use crate::optim::FlatAdam;
use crate::rng::Rng;
use crate::watch::{self, Watch};

/// Everything a run is configured by; stored in every checkpoint.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub data: PathBuf,
    /// Model file to start from instead of random weights (a new run only).
    pub init: Option<PathBuf>,
    /// With `init`: reset the per-level gains to the `√λ` ladder (see
    /// [`Model::with_gain_ladder`]), for models trained before the ladder existed.
    #[serde(default)]
    pub reset_gains: bool,
    /// Folder of validation images; `None`: the held-out validation photos under `data`
    /// ([`data::validation_images`]).
    pub val: Option<PathBuf>,
    pub val_images: usize,
    pub run: PathBuf,
    pub batch: usize,
    pub crop: u32,
    pub max_short: u32,
    pub steps: u64,
    pub lr: f64,
    pub warmup: u64,
    pub clip: f32,
    pub checkpoint_minutes: f64,
    pub val_every: u64,
    pub minutes: Option<f64>,
    /// What the transforms compute in ([`Precision`]); a machine's choice like the paths, so
    /// it may change on resuming (e.g. bf16 for the bulk of a run, f32 for its decay).
    #[serde(default)]
    pub precision: Precision,
    pub seed: u64,
    /// Which weights the run trains ([`Part`]).
    #[serde(default)]
    pub part: Part,
    /// With [`Part::EntropyModel`]: how many crops' latents the cache holds.
    #[serde(default)]
    pub latent_crops: usize,
    /// Relative frequency of each quality level in the batches, lowest first; a checkpoint
    /// from before the option reads as all ones, which draws what its uniform draw did.
    #[serde(default = "uniform_levels")]
    pub level_weights: Vec<u32>,
    /// With [`Part::PostFilter`]: the `[width, fold]` of a new filter that replaces the
    /// `init` model's own at the start (see [`codec::model::post_filter::Shape`]); `None`
    /// trains the model's filter, widened to the default width where narrower.
    #[serde(default)]
    pub new_filter: Option<[usize; 2]>,
    /// Whether the run added global references to the `init` model's entropy model
    /// ([`codec::model::Model::with_global_refs`]) before its first step.
    #[serde(default)]
    pub global_refs: bool,
    /// Whether the run added a latent residual predictor to the `init` model
    /// ([`codec::model::Model::with_lrp`]) before its first step.
    #[serde(default)]
    pub lrp: bool,
    /// The decay of the weight average the run keeps beside its weights ([`Average`]), if
    /// it keeps one.
    #[serde(default)]
    pub ema: Option<f32>,
}

/// Which weights a run trains. The runs that train one part keep every other weight's value
/// exactly, and so leave the GDNs as they are (a whole-model run makes all their entries
/// trainable first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// Every weight, for the rate-distortion loss ([`Step::run`]).
    #[default]
    Whole,
    /// The entropy model alone, for rate, on the latents of `latent_crops` crops that the
    /// frozen analysis transform computes once at the start ([`LatentCache`],
    /// [`Step::run_entropy`]); the transforms and gains keep their values.
    EntropyModel,
    /// The post-filter alone, for distortion, on what the frozen model reconstructs of each
    /// batch ([`Step::run_post_filter`]).
    PostFilter,
    /// The decoder alone (latent residual predictor, synthesis, inverse gains, post-filter),
    /// for distortion, on the
    /// frozen encoder's rounded latents ([`Step::run_decoder`]): every stream keeps its bytes.
    Decoder,
}

impl Config {
    /// Reads a configuration stored in a checkpoint, including those from before [`Part`]
    /// existed, which said the same with one flag per part (`entropy_only`, `post_filter`,
    /// `decoder`; at most one of them set).
    pub fn from_stored(mut stored: serde_json::Value) -> Result<Self, serde_json::Error> {
        if let Some(fields) = stored.as_object_mut()
            && !fields.contains_key("part")
        {
            let mut part = Part::Whole;
            for (flag, named) in [
                ("entropy_only", Part::EntropyModel),
                ("post_filter", Part::PostFilter),
                ("decoder", Part::Decoder),
            ] {
                if fields.remove(flag) == Some(serde_json::Value::Bool(true)) {
                    part = named;
                }
            }
            fields.insert("part".into(), serde_json::to_value(part)?);
        }
        serde_json::from_value(stored)
    }
}

/// Every quality level equally often: the default, and what runs before `level_weights` did.
pub fn uniform_levels() -> Vec<u32> {
    vec![1; LEVELS]
}

impl Config {
    /// The shape of the new filter a post-filter run starts from, if it asks for one.
    pub fn new_filter_shape(&self) -> Option<Shape> {
        self.new_filter.map(|[width, fold]| Shape { width, fold })
    }

    /// Learning rate at `step`: linear warm-up, then cosine decay to 5% of the peak.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let t = ((step - self.warmup) as f64
            / (self.steps.saturating_sub(self.warmup)).max(1) as f64)
            .min(1.0);
        self.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
    }
}

/// Set by SIGINT/SIGTERM: the loop saves a checkpoint and stops.
pub static STOP: AtomicBool = AtomicBool::new(false);

struct Log(std::fs::File);

impl Log {
    fn open(run: &Path) -> Result<Self, String> {
        let p = run.join("log.jsonl");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map(Log)
            .map_err(|e| format!("cannot open {}: {e}", p.display()))
    }

    fn write(&mut self, v: serde_json::Value) {
        // A full disk must not kill a long run; the checkpoint is what matters.
        let _ = writeln!(self.0, "{v}");
        let _ = self.0.flush();
    }
}

/// Validation in real bytes: each image coded at qualities 1, 4 and 8 through the
/// deterministic entropy path, then decoded. Returns per-quality (bpp, PSNR) means.
pub fn validate<B: burn::tensor::backend::Backend>(
    model: &Model<B>,
    images: &[Planar],
    device: &B::Device,
) -> Result<Vec<(f32, f64, f64)>, String> {
    let codec =
        Codec::<B>::new(ModelFile::from_model(model), device.clone()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for q in [1.0f32, 4.0, 8.0] {
        let (mut bpp, mut psnr) = (0.0, 0.0);
        for img in images {
            let bytes = codec.compress(img, q).map_err(|e| e.to_string())?;
            let rec = codec.decompress(&bytes).map_err(|e| e.to_string())?;
            bpp += 8.0 * bytes.len() as f64 / f64::from(img.width * img.height);
            psnr += codec::metrics::psnr_rgb8(img, &rec);
        }
        out.push((q, bpp / images.len() as f64, psnr / images.len() as f64));
    }
    Ok(out)
}

/// Consecutive batches with a non-finite loss after which a run stops: a model that gives
/// that many different batches no finite loss is broken, not unlucky.
const SKIPS_IN_A_ROW: u64 = 20;

/// The run's validation images and the [`Watch`] over what they give.
struct Validation {
    images: Vec<Planar>,
    watch: Watch,
}

impl Validation {
    /// Validates `model` at step `at`, prints and logs the points, and hands them to the
    /// watch, whose error (the model has fallen apart) stops the run. A validation that fails
    /// to code is reported and skipped.
    fn run<B: burn::tensor::backend::Backend>(
        &mut self,
        model: &Model<B>,
        device: &B::Device,
        at: u64,
        log: &mut Log,
        bar: &ProgressBar,
    ) -> Result<(), String> {
        let points = match validate(model, &self.images, device) {
            Ok(points) => points,
            Err(e) => {
                bar.println(format!("step {at}: validation failed: {e}"));
                return Ok(());
            }
        };
        bar.println(format!(
            "step {at}: validation {}",
            points
                .iter()
                .map(|(q, b, p)| format!("q{q}: {b:.3} bpp {p:.2} dB"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let pts: Vec<_> = points
            .iter()
            .map(|(q, b, p)| serde_json::json!({"quality": q, "bpp": b, "psnr": p}))
            .collect();
        log.write(serde_json::json!({"step": at, "validation": pts}));
        self.watch.check(at, &points)
    }
}

/// Adam over all parameters at once, gradients clipped to a joint norm of `clip`
/// ([`FlatAdam`]).
pub fn optimizer<B: AutodiffBackend>(clip: f32) -> FlatAdam<B> {
    FlatAdam::new(clip)
}

/// One optimisation step: the loss `λ·255²·MSE + bpp` of a batch at one quality level, its
/// gradient, and an Adam update. The trainer and `ember-train bench` both run exactly this.
pub struct Step;

/// The parts of a step, in order, as [`Step::run`] reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Forward pass and loss, up to reading the statistics back.
    Forward,
    /// Backpropagation into per-parameter gradients.
    Backward,
    /// Gradient clipping and the Adam update.
    Update,
}

impl Step {
    /// Returns the updated model and `[loss, mse, bpp]`, or the model untouched and `None`
    /// when the loss is NaN or infinite. `done` is called as each [`Phase`] has been issued:
    /// `ember-train bench` waits for the device there to see where a step's time goes.
    pub fn run<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
        &self,
        model: Model<B>,
        optim: &mut O,
        x: Tensor<B, 4>,
        level: usize,
        lr: f64,
        done: impl FnMut(Phase),
    ) -> (Model<B>, Option<[f64; 3]>) {
        let RdLoss { loss, mse, bpp } = model
            .forward(x.clone(), (level + 1) as f32, true)
            .rd_loss(x, LAMBDAS[level]);
        descend(model, optim, [loss, mse, bpp], lr, done)
    }

    /// The entropy model's step of an `--entropy-only` run: the bits per pixel of ungained
    /// latents `y` (from crops of `pixels` pixels each) at quality level `level`, with the
    /// analysis transform and the gains held fixed, so only the entropy model learns. Returns
    /// the updated model and the bpp, or `None` for a non-finite loss.
    pub fn run_entropy<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
        &self,
        model: Model<B>,
        optim: &mut O,
        y: Tensor<B, 4>,
        level: usize,
        pixels: usize,
        lr: f64,
    ) -> (Model<B>, Option<f64>) {
        let n = y.dims()[0];
        let y = (y * model.gain_for((level + 1) as f32, false)).detach();
        let bits = model.entropy(y, true).bits;
        let bpp = bits.sum().div_scalar((n * pixels) as f64);
        let (model, stats) = descend(model, optim, [bpp], lr, |_| {});
        (model, stats.map(|[bpp]| bpp))
    }

    /// The post-filter's step of a `--post-filter` run: the frozen model (outside autodiff)
    /// reconstructs the batch as the decoder would, from rounded latents, and the filter
    /// learns to bring that reconstruction closer to `x`. The loss is the filtered MSE over
    /// the unfiltered one, so each batch weighs by its relative gain (what PSNR counts) and
    /// a low quality's large errors do not drown a high one's; below 1 means the filter
    /// helps. Returns the updated model and `[loss, mse, bpp]`, or `None` for a non-finite
    /// loss.
    pub fn run_post_filter<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
        &self,
        model: Model<B>,
        optim: &mut O,
        x: Tensor<B, 4>,
        level: usize,
        lr: f64,
    ) -> (Model<B>, Option<[f64; 3]>) {
        let q = (level + 1) as f32;
        let frozen = model.valid();
        let (y_hat, hyper, bpp) = coded_latent(&frozen, &x, q);
        let plain = Tensor::<B, 4>::from_inner(
            frozen.synthesis_transform(frozen.predict_residual(y_hat, hyper), q),
        );
        let post = model
            .post
            .as_ref()
            .expect("a post-filter run's model has a filter");
        let plain_mse = (plain.clone() - x.clone()).powi_scalar(2).mean().detach();
        let mse = (post.forward(plain, q) - x).powi_scalar(2).mean();
        let loss = mse.clone() / plain_mse;
        descend(model, optim, [loss, mse, bpp], lr, |_| {})
    }

    /// The decoder's step of a `--decoder` run: the frozen encoder and entropy model (outside
    /// autodiff) give the rounded latent `ŷ` the coder would write and its hyper features, and
    /// the decoder (latent residual predictor, synthesis, inverse gains, post-filter) learns to
    /// reconstruct `x` from them. Why the loss is
    /// `10·log10(MSE)`, i.e. minus the PSNR, and not `λ·255²·MSE`: with the rate fixed, the
    /// λ-weighted loss would let the highest quality's batches steer the decoder (λ grows
    /// 100-fold across the levels while the MSE falls only about 6-fold), whereas what the
    /// rate–distortion curve counts is decibels at every quality alike, which is the
    /// gradient `∇MSE / MSE` this gives (as the post-filter's ratio loss does). Returns the
    /// updated model and `[loss, mse, bpp]`, or `None` for a non-finite loss.
    pub fn run_decoder<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
        &self,
        model: Model<B>,
        optim: &mut O,
        x: Tensor<B, 4>,
        level: usize,
        lr: f64,
    ) -> (Model<B>, Option<[f64; 3]>) {
        let q = (level + 1) as f32;
        let (y_hat, hyper, bpp) = coded_latent(&model.valid(), &x, q);
        let x_hat = model.reconstruct(Tensor::from_inner(y_hat), Tensor::from_inner(hyper), q);
        let mse = (x_hat - x).powi_scalar(2).mean();
        let loss = mse.clone().log().mul_scalar(10.0 / std::f64::consts::LN_10);
        descend(model, optim, [loss, mse, bpp], lr, |_| {})
    }
}

/// What the frozen model (`model.valid()`, outside autodiff) codes the batch `x` into at
/// quality `q`: the rounded latent `ŷ` the decoder receives, the hyper features it was coded
/// with, and its bits per pixel; the start of the steps that train the decoder side alone.
fn coded_latent<B: AutodiffBackend>(
    frozen: &Model<B::InnerBackend>,
    x: &Tensor<B, 4>,
    q: f32,
) -> (
    Tensor<B::InnerBackend, 4>,
    Tensor<B::InnerBackend, 4>,
    Tensor<B, 1>,
) {
    let [n, _, h, w] = x.dims();
    let coded = frozen.entropy(frozen.analysis(x.clone().inner(), q), false);
    let bpp = Tensor::from_inner(coded.bits.sum().div_scalar((n * h * w) as f64));
    (coded.y_hat, coded.hyper, bpp)
}

/// Reads `stats` back in one device read, and unless the first of them, the loss, is NaN or
/// infinite takes its gradient and an optimizer step: the shared tail of every kind of step.
/// Returns the model and the values of `stats`, or the model untouched and `None`.
fn descend<B: AutodiffBackend, O: Optimizer<Model<B>, B>, const N: usize>(
    model: Model<B>,
    optim: &mut O,
    stats: [Tensor<B, 1>; N],
    lr: f64,
    mut done: impl FnMut(Phase),
) -> (Model<B>, Option<[f64; N]>) {
    let loss = stats[0].clone();
    let values: [f64; N] = Tensor::cat(stats.map(|t| t.reshape([1])).to_vec(), 0)
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("float data")
        .try_into()
        .expect("one value per statistic");
    done(Phase::Forward);
    if !values[0].is_finite() {
        return (model, None);
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    done(Phase::Backward);
    let model = optim.step(lr, model, grads);
    done(Phase::Update);
    (model, Some(values))
}

/// Where a run's batches come from.
enum Source {
    /// Pixel crops from the prefetching data thread.
    Crops(std::sync::mpsc::Receiver<Vec<f32>>),
    /// Cached latents, for `--entropy-only`.
    Latents(LatentCache),
}

pub fn train<B: AutodiffBackend>(
    config: Config,
    resume: Option<(PathBuf, State)>,
    device: B::Device,
) -> Result<(), String> {
    std::fs::create_dir_all(&config.run)
        .map_err(|e| format!("cannot create {}: {e}", config.run.display()))?;
    let mut optim = optimizer::<B>(config.clip);
    // The last checkpoint on disk: the one resumed from, then each one written. A stop right
    // after it writes none: rewriting a folder in place would first remove the one that
    // `latest` names, and a kill at that moment would leave nothing to resume from.
    let mut saved = resume
        .as_ref()
        .map(|(ckpt, state)| (ckpt.clone(), state.step));
    let (mut model, mut state) = match resume {
        Some((ckpt, state)) => {
            optim = checkpoint::load_optim(&ckpt, optim, &device)?;
            eprintln!("resuming from {} (step {})", ckpt.display(), state.step);
            (checkpoint::load_model::<B>(&ckpt, &device)?, state)
        }
        None => {
            B::seed(&device, config.seed);
            let cfg = serde_json::to_value(&config).expect("config serializes");
            let model = match &config.init {
                Some(path) => {
                    let file = ModelFile::load(path).map_err(|e| e.to_string())?;
                    eprintln!(
                        "starting from {} (weights {:016x})",
                        path.display(),
                        file.hash
                    );
                    let mut model = file.to_burn::<B>(&device).map_err(|e| e.to_string())?;
                    if let Some(shape) = config.new_filter_shape() {
                        model = model.with_new_post_filter(shape);
                    }
                    if config.global_refs {
                        model = model.with_global_refs();
                    }
                    if config.lrp {
                        model = model.with_lrp();
                    }
                    if config.reset_gains {
                        model.with_gain_ladder()
                    } else {
                        model
                    }
                }
                None => Model::new(&device),
            };
            (
                model,
                State {
                    step: 0,
                    rng: Rng::new(config.seed),
                    seconds: 0.0,
                    images: 0,
                    config: cfg,
                },
            )
        }
    };
    match config.part {
        // Whatever the model came from, every GDN entry must be able to train.
        Part::Whole => model = model.with_trainable_gdn(),
        // A post-filter run trains a filter of its shape: a new one, or the model's own
        // widened with its function kept (a resumed run's already has that shape).
        Part::PostFilter => {
            model = model.with_post_filter(config.new_filter_shape().unwrap_or(Shape::DEFAULT));
        }
        Part::EntropyModel | Part::Decoder => {}
    }
    model = model.with_precision(config.precision);
    // The weight average continues the resumed checkpoint's, or starts at the weights the run
    // starts from (also where a run's checkpoints predate it).
    let mut average = match config.ema {
        None => None,
        Some(decay) => {
            let inner = model.valid();
            let stored = match &saved {
                Some((ckpt, _)) => {
                    checkpoint::load_average(ckpt, &device)?.map(|mean| (ckpt.clone(), mean))
                }
                None => None,
            };
            Some(match stored {
                Some((ckpt, mean)) => Average::resume(&inner, decay, mean).ok_or_else(|| {
                    format!(
                        "the weight average in {} is of another model than its weights",
                        ckpt.display()
                    )
                })?,
                None => Average::start(&inner, decay),
            })
        }
    };
    let mut log = Log::open(&config.run)?;
    eprintln!("loading training images from {} ...", config.data.display());
    let data = Arc::new(Dataset::load(&config.data, config.crop, config.max_short)?);
    let val_files = match &config.val {
        Some(dir) if dir.is_dir() => {
            codec::image_io::list_images(dir).map_err(|e| e.to_string())?
        }
        Some(dir) => {
            eprintln!(
                "warning: validation folder {} not found; validation is off",
                dir.display()
            );
            Vec::new()
        }
        None => {
            let files = data::validation_images(&config.data);
            if files.is_empty() {
                eprintln!(
                    "warning: none of the held-out validation photos (train/validation.txt) is \
                     under {}; validation is off (give --val)",
                    config.data.display()
                );
            }
            files
        }
    };
    let val: Vec<Planar> = val_files
        .iter()
        .take(config.val_images)
        .map(|p| Planar::load(p).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    eprintln!(
        "{} training images, {} validation images",
        data.len(),
        val.len()
    );
    let mut rng = state.rng;
    let source = if config.part == Part::EntropyModel {
        // Drawn from the run's seed, not its current state, so a cache rebuilt on resuming
        // holds the same crops.
        let inner = model.valid();
        let cache = LatentCache::open(
            &config.run.join("latents.bin"),
            &inner,
            Crops {
                data: &data,
                rng: Rng::new(config.seed ^ 0x6c61_7465_6e74),
                count: config.latent_crops,
                batch: config.batch,
                crop: config.crop,
            },
            &device,
        )?;
        Source::Latents(cache)
    } else {
        // The data thread draws from its own generator, derived from the run's so resumes
        // repeat it.
        Source::Crops(data::prefetch(
            data.clone(),
            Rng::new(rng.next_u64()),
            config.batch,
            config.crop,
            4,
        ))
    };

    let bar = ProgressBar::new(config.steps);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(state.step);
    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut last_ckpt = Instant::now();
    let mut window = (Instant::now(), 0u64);
    let deadline = config
        .minutes
        .map(|m| started + std::time::Duration::from_secs_f64(m * 60.0));
    let (mut skipped, mut skipped_in_a_row) = (0u64, 0u64);
    let step = Step;
    // The first validation, of the model the run starts or resumes from, is the baseline
    // that later ones are held to.
    let mut validation = (config.val_every > 0 && !val.is_empty()).then(|| Validation {
        images: val,
        watch: Watch::default(),
    });
    if let Some(v) = &mut validation {
        v.run(&model.valid(), &device, state.step, &mut log, &bar)?;
    }

    while state.step < config.steps
        && !STOP.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let lr = config.lr_at(state.step);
        let level = rng.weighted(&config.level_weights);
        // `(loss, mse, bpp)`; an entropy-only step has no distortion term, so no mse.
        let (next, stats) = match &source {
            Source::Crops(batches) => {
                let batch = batches
                    .recv()
                    .map_err(|_| "data thread stopped".to_string())?;
                let x = Tensor::<B, 4>::from_data(
                    TensorData::new(
                        batch,
                        [config.batch, 3, config.crop as usize, config.crop as usize],
                    ),
                    &device,
                );
                let (next, stats) = match config.part {
                    Part::PostFilter => step.run_post_filter(model, &mut optim, x, level, lr),
                    Part::Decoder => step.run_decoder(model, &mut optim, x, level, lr),
                    Part::Whole | Part::EntropyModel => {
                        step.run(model, &mut optim, x, level, lr, |_| {})
                    }
                };
                (next, stats.map(|[l, m, b]| (l, Some(m), b)))
            }
            Source::Latents(cache) => {
                let y = cache.batch(&mut rng, config.batch, &device);
                let (next, bpp) = step.run_entropy(model, &mut optim, y, level, cache.pixels(), lr);
                // The transforms are fixed, so the loss is the rate alone.
                (next, bpp.map(|b| (b, None, b)))
            }
        };
        model = next;
        let Some((loss_v, mse_v, bpp_v)) = stats else {
            skipped += 1;
            skipped_in_a_row += 1;
            log.write(serde_json::json!({"step": state.step, "skipped": "non-finite loss", "level": level, "skipped_total": skipped}));
            state.step += 1;
            // A skipped batch leaves the model as it was, so a model that gives every batch a
            // non-finite loss would skip to the end of the schedule.
            if skipped_in_a_row == SKIPS_IN_A_ROW {
                return Err(watch::diverged(
                    format!(
                        "the {SKIPS_IN_A_ROW} batches up to step {} all gave a non-finite loss",
                        state.step
                    ),
                    None,
                ));
            }
            continue;
        };
        skipped_in_a_row = 0;
        if let Some(a) = &mut average {
            a.update(&model.valid());
        }
        state.step += 1;
        state.images += config.batch as u64;
        window.1 += config.batch as u64;

        if state.step % 10 == 0 || state.step == 1 {
            let img_s = window.1 as f64 / window.0.elapsed().as_secs_f64();
            window = (Instant::now(), 0);
            let psnr = mse_v.map(|m| -10.0 * m.max(1e-12).log10());
            let shown = psnr.map_or(String::new(), |p| format!(" psnr {p:.2}"));
            bar.set_message(format!(
                "loss {loss_v:.3} bpp {bpp_v:.3}{shown} q{} {img_s:.1} img/s",
                level + 1
            ));
            log.write(serde_json::json!({"step": state.step, "loss": loss_v, "bpp": bpp_v, "psnr": psnr, "level": level + 1, "lr": config.lr_at(state.step), "img_s": img_s, "images": state.images}));
        }
        bar.set_position(state.step);

        if let Some(v) = validation
            .as_mut()
            .filter(|_| state.step % config.val_every == 0)
        {
            v.run(&model.valid(), &device, state.step, &mut log, &bar)?;
        }
        if last_ckpt.elapsed().as_secs_f64() > config.checkpoint_minutes * 60.0 {
            state.rng = rng;
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            let p = checkpoint::save(&config.run, &model, &optim, average.as_ref(), &state)?;
            bar.println(format!("checkpoint {}", p.display()));
            saved = Some((p, state.step));
            last_ckpt = Instant::now();
        }
    }
    state.rng = rng;
    state.seconds = seconds_before + started.elapsed().as_secs_f64();
    let p = match saved {
        Some((p, step)) if step == state.step => p,
        _ => checkpoint::save(&config.run, &model, &optim, average.as_ref(), &state)?,
    };
    bar.finish_and_clear();
    eprintln!(
        "stopped at step {} after {:.1} min; checkpoint {}",
        state.step,
        state.seconds / 60.0,
        p.display()
    );
    log.write(serde_json::json!({"step": state.step, "checkpoint": p.display().to_string(), "seconds": state.seconds}));
    Ok(())
}
