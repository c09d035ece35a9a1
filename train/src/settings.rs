//! `ember-train run`'s options and how they become a run's [`Config`].
//!
//! A new run takes each option from the command line or its default. A resumed run takes
//! every option not given from its checkpoint, so `--resume` alone continues exactly the run
//! that was stopped; the options that define the optimisation (batch, crop, image size, learning
//! rate, warm-up, clipping, seed) cannot change under a run, and giving a different value is an
//! error rather than a silent switch. `--steps` may change (a run may be extended), as may the
//! paths, validation and checkpoint settings, which depend on the machine.

use std::path::PathBuf;

use clap::Args;
use codec::backend::BackendKind;
use codec::model::Precision;
use codec::model::arch::LEVELS;

use crate::checkpoint::{self, State};
use crate::trainer::{Config, Part, uniform_levels};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run folder: log.jsonl and checkpoints.
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
    /// Continue from the run's latest checkpoint, with its settings (a new run if none).
    #[arg(long)]
    pub resume: bool,
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// What the analysis and synthesis transforms compute in: bf16 takes a step 0.54 of the
    /// time on a CPU with AVX-512-BF16, at a small cost per step, but is not stable from the
    /// shipped model: at a peak --lr of 8e-5, and again at 5e-5, it wrecked it within 150
    /// steps where f32 did not (train/GPU.md); parameters, optimizer and entropy model stay f32.
    /// LibTorch only; may change on --resume [default: full, or the resumed run's].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Stop after this many minutes (checkpointing first); the schedule continues on --resume.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Start a new run from this model file (e.g. the shipped model) instead of random weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// With --init: reset the per-level gains to the √λ ladder (for models trained
    /// before the ladder existed).
    #[arg(long, requires = "init")]
    pub reset_gains: bool,
    /// Folder of training images, searched recursively; never Kodak
    /// [default: ../shared/datasets/train].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Folder of validation images, coded to real bytes every --val-every steps [default: the
    /// held-out photos of train/validation.txt under --data, which training never sees; never
    /// Kodak, the test set].
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// How many validation images to use: the first of --val in sorted order, or of the
    /// held-out list in its order [default: 3].
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Steps between validations, which also stop a run whose model falls apart (its cost at
    /// a quality rising to 1.5 times the best seen); one runs at the start [default: 500].
    #[arg(long)]
    pub val_every: Option<u64>,
    /// Minutes between checkpoints [default: 10].
    #[arg(long)]
    pub checkpoint_minutes: Option<f64>,
    /// Total steps of the schedule; may be raised on --resume [default: 500000].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Images per batch; fixed for a run [default: 16].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Side of the square random crops; fixed for a run [default: 256].
    #[arg(long)]
    pub crop: Option<u32>,
    /// Training images are downscaled so their shorter side is at most this; fixed for a run
    /// [default: 512].
    #[arg(long)]
    pub max_short: Option<u32>,
    /// Peak learning rate; fixed for a run [default: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps; fixed for a run [default: 1000].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Limit on the joint L2 norm of all gradients; fixed for a run [default: 1].
    #[arg(long)]
    pub clip: Option<f32>,
    /// Seed of the run's random numbers; fixed for a run [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train only the entropy model (hyper-analysis and -synthesis, factorized prior, slice
    /// contexts) for rate, with the analysis and synthesis transforms and the gains frozen,
    /// on latents the analysis computes once per crop (needs --init); fixed for a run.
    #[arg(long, requires = "init")]
    pub entropy_only: bool,
    /// With --entropy-only: how many crops' latents to cache (each takes M·(crop/16)² floats:
    /// 768 KiB at 512²); fixed for a run [default: 4096].
    #[arg(long, requires = "entropy_only")]
    pub latent_crops: Option<usize>,
    /// Train only the post-filter after the synthesis (added as the identity where the --init
    /// model has none, widened to 64 channels with its function kept where it is narrower)
    /// for distortion, on the frozen model's reconstructions of each
    /// batch, at the batch's quality; the rest of the model keeps its values exactly (needs
    /// --init); fixed for a run.
    #[arg(long, requires = "init", conflicts_with = "entropy_only")]
    pub post_filter: bool,
    /// With --post-filter: train a new filter of WIDTH hidden channels in place of the --init
    /// model's own, on the image as it is (`64`) or folded to half resolution, each 2×2
    /// block of pixels as 12 channels (`64/2`: about a quarter of the multiply-adds per
    /// pixel at the same width); fixed for a run.
    #[arg(long, requires = "post_filter", value_name = "WIDTH[/FOLD]", value_parser = parse_filter)]
    pub new_filter: Option<[usize; 2]>,
    /// Train only the decoder (the synthesis transform, its per-level inverse gains, and the
    /// latent residual predictor and post-filter where the model has them) for distortion, on the rounded latents of the
    /// frozen encoder and entropy model: every stream keeps its bytes and only the pictures
    /// decoded from them change (needs --init); fixed for a run.
    #[arg(long, requires = "init", conflicts_with_all = ["entropy_only", "post_filter"])]
    pub decoder: bool,
    /// Give the --init model's entropy model global references (model 2: each slice's
    /// non-anchors read the slice's decoded anchors from the whole latent, by linear
    /// attention), added with zero weight so that training starts from the model's own
    /// function; fixed for a run. Train them with --entropy-only.
    #[arg(long, requires = "init")]
    pub global_refs: bool,
    /// Give the --init model a latent residual predictor (a network before the synthesis
    /// that predicts the rounding error of the latent from the decoded latent and the hyper
    /// features), added predicting nothing so that training starts from the model's own
    /// function; fixed for a run. Train it with --decoder or a whole-model run.
    #[arg(long, requires = "init", conflicts_with_all = ["entropy_only", "post_filter"])]
    pub lrp: bool,
    /// Keep an exponential moving average of the weights beside them, `mean ← DECAY·mean +
    /// (1 − DECAY)·weights` after every step (about the last 1/(1 − DECAY) steps), in every
    /// checkpoint; `ember-train export --ema` writes it instead of the weights; fixed for a run.
    #[arg(long, value_name = "DECAY", value_parser = parse_decay)]
    pub ema: Option<f32>,
    /// How often each quality level is drawn for a batch, relative to the others, lowest
    /// first: eight whole numbers such as 1,1,1,1,2,2,2,2 (twice as many batches at qualities
    /// 5-8); fixed for a run [default: all equal].
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub level_weights: Option<Vec<u32>>,
}

impl RunArgs {
    /// The configuration to train with, and the checkpoint it continues (its folder and
    /// state) when resuming. The trainer resumes from exactly this checkpoint.
    pub fn config(self) -> Result<(Config, Option<(PathBuf, State)>), String> {
        let Some(ckpt) = checkpoint::latest(&self.run).filter(|_| self.resume) else {
            if self.resume {
                eprintln!(
                    "no checkpoint in {}; starting a new run",
                    self.run.display()
                );
            }
            return Ok((self.new_run()?, None));
        };
        let mut state = checkpoint::load_state(&ckpt)?;
        let old = Config::from_stored(std::mem::take(&mut state.config)).map_err(|e| {
            format!(
                "checkpoint {} has an unreadable configuration: {e}",
                ckpt.display()
            )
        })?;
        if let Some(init) = &self.init {
            return Err(format!(
                "--init {} starts a new run, but {} already has checkpoints; drop --init to \
                 resume it, or pick another --run",
                init.display(),
                self.run.display()
            ));
        }
        let config = Config {
            data: self.data.unwrap_or(old.data),
            init: old.init,
            reset_gains: old.reset_gains,
            val: self.val.or(old.val),
            val_images: self.val_images.unwrap_or(old.val_images),
            run: self.run,
            batch: fixed("batch", self.batch, old.batch)?,
            crop: fixed("crop", self.crop, old.crop)?,
            max_short: fixed("max-short", self.max_short, old.max_short)?,
            steps: self.steps.unwrap_or(old.steps),
            lr: fixed("lr", self.lr, old.lr)?,
            warmup: fixed("warmup", self.warmup, old.warmup)?,
            clip: fixed("clip", self.clip, old.clip)?,
            checkpoint_minutes: self.checkpoint_minutes.unwrap_or(old.checkpoint_minutes),
            val_every: self.val_every.unwrap_or(old.val_every),
            minutes: self.minutes,
            precision: self.precision.unwrap_or(old.precision),
            seed: fixed("seed", self.seed, old.seed)?,
            part: old.part,
            latent_crops: fixed("latent-crops", self.latent_crops, old.latent_crops)?,
            level_weights: match self.level_weights {
                Some(w) if w != old.level_weights => {
                    return Err(format!(
                        "--level-weights {w:?} differs from the resumed run's {:?}; a run keeps \
                         its --level-weights (start a new run with --init to change it)",
                        old.level_weights
                    ));
                }
                _ => old.level_weights,
            },
            new_filter: old.new_filter,
            global_refs: old.global_refs,
            lrp: old.lrp,
            ema: match self.ema {
                Some(d) if Some(d) != old.ema => {
                    return Err(format!(
                        "--ema {d} differs from the resumed run's {}; a run keeps its weight \
                         average (start a new run with --init to change it)",
                        old.ema.map_or("(none)".into(), |d| d.to_string())
                    ));
                }
                _ => old.ema,
            },
        };
        // What changed on resuming (a longer schedule, another data path) is saved onward.
        state.config = serde_json::to_value(&config).expect("config serializes");
        Ok((config, Some((ckpt, state))))
    }

    /// The part a new run trains, from its flags (clap lets at most one through).
    fn part(&self) -> Part {
        if self.entropy_only {
            Part::EntropyModel
        } else if self.post_filter {
            Part::PostFilter
        } else if self.decoder {
            Part::Decoder
        } else {
            Part::Whole
        }
    }

    fn new_run(self) -> Result<Config, String> {
        let part = self.part();
        let level_weights = match self.level_weights {
            None => uniform_levels(),
            Some(w) if w.len() != LEVELS || w.iter().all(|&x| x == 0) => {
                return Err(format!(
                    "--level-weights takes {LEVELS} whole numbers, not all zero (one per \
                     quality level, lowest first); got {w:?}"
                ));
            }
            Some(w) => w,
        };
        Ok(Config {
            data: self
                .data
                .unwrap_or_else(|| "../shared/datasets/train".into()),
            init: self.init,
            reset_gains: self.reset_gains,
            val: self.val,
            val_images: self.val_images.unwrap_or(3),
            run: self.run,
            batch: self.batch.unwrap_or(16),
            crop: self.crop.unwrap_or(256),
            max_short: self.max_short.unwrap_or(512),
            steps: self.steps.unwrap_or(500_000),
            lr: self.lr.unwrap_or(1e-4),
            warmup: self.warmup.unwrap_or(1000),
            clip: self.clip.unwrap_or(1.0),
            checkpoint_minutes: self.checkpoint_minutes.unwrap_or(10.0),
            val_every: self.val_every.unwrap_or(500),
            minutes: self.minutes,
            precision: self.precision.unwrap_or_default(),
            seed: self.seed.unwrap_or(1),
            part,
            latent_crops: if part == Part::EntropyModel {
                self.latent_crops.unwrap_or(4096)
            } else {
                0
            },
            level_weights,
            new_filter: self.new_filter,
            global_refs: self.global_refs,
            lrp: self.lrp,
            ema: self.ema,
        })
    }
}

/// `--ema`'s decay: a number strictly between 0 and 1.
fn parse_decay(text: &str) -> Result<f32, String> {
    text.parse::<f32>()
        .ok()
        .filter(|d| *d > 0.0 && *d < 1.0)
        .ok_or_else(|| format!("{text:?}: expected a decay strictly between 0 and 1, such as 0.99"))
}

/// `WIDTH` or `WIDTH/FOLD` for `--new-filter`: a width of 1 to 256 and a fold of 1 or 2.
fn parse_filter(text: &str) -> Result<[usize; 2], String> {
    let (width, fold) = text.split_once('/').unwrap_or((text, "1"));
    let width = width
        .parse::<usize>()
        .ok()
        .filter(|w| (1..=256).contains(w));
    match (width, fold) {
        (Some(width), "1") => Ok([width, 1]),
        (Some(width), "2") => Ok([width, 2]),
        _ => Err(format!(
            "{text:?}: expected WIDTH or WIDTH/FOLD, a width of 1 to 256 and a fold of 1 or 2"
        )),
    }
}

/// A setting that defines a run: the checkpoint's value, which the command line may repeat
/// but not change.
fn fixed<T: PartialEq + std::fmt::Display + Copy>(
    flag: &str,
    given: Option<T>,
    stored: T,
) -> Result<T, String> {
    match given {
        Some(v) if v != stored => Err(format!(
            "--{flag} {v} differs from the resumed run's {stored}; a run keeps its \
             --{flag} (start a new run with --init to change it)"
        )),
        _ => Ok(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_settings_may_be_repeated_but_not_changed() {
        assert_eq!(fixed("batch", None, 8), Ok(8));
        assert_eq!(fixed("batch", Some(8), 8), Ok(8));
        let err = fixed("batch", Some(16), 8).unwrap_err();
        assert!(err.contains("--batch 16") && err.contains("8"), "{err}");
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let dir = std::env::temp_dir().join("ember-settings-test-no-such-run");
        let mut argv = vec!["ember-train", "--run", dir.to_str().unwrap()];
        argv.extend_from_slice(args);
        <Cli as clap::Parser>::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .run
            .config()
            .map(|(config, _)| config)
    }

    #[test]
    fn level_weights_take_one_whole_number_per_level() {
        assert_eq!(parse(&[]).unwrap().level_weights, [1; LEVELS]);
        let w = parse(&["--level-weights", "1,1,1,1,2,2,2,2"]).unwrap();
        assert_eq!(w.level_weights, [1, 1, 1, 1, 2, 2, 2, 2]);
        for bad in ["1,2,3", "0,0,0,0,0,0,0,0"] {
            let err = parse(&["--level-weights", bad]).unwrap_err();
            assert!(err.contains("8 whole numbers"), "{err}");
        }
        assert!(parse(&["--level-weights", "1,-1,1,1,1,1,1,1"]).is_err());
    }

    #[test]
    fn a_new_filter_is_a_width_and_a_fold_of_one_or_two() {
        let run = |filter: &str| {
            parse(&[
                "--init",
                "m.safetensors",
                "--post-filter",
                "--new-filter",
                filter,
            ])
            .map(|c| c.new_filter)
        };
        assert_eq!(run("32"), Ok(Some([32, 1])));
        assert_eq!(run("64/2"), Ok(Some([64, 2])));
        assert_eq!(run("48/1"), Ok(Some([48, 1])));
        for bad in ["0", "64/3", "64/", "/2", "wide", "300"] {
            let err = run(bad).unwrap_err();
            assert!(err.contains("WIDTH/FOLD"), "{bad}: {err}");
        }
        // Only a post-filter run trains a new filter.
        assert!(parse(&["--init", "m.safetensors", "--new-filter", "32"]).is_err());
        assert_eq!(parse(&[]).unwrap().new_filter, None);
    }

    #[test]
    fn a_run_from_before_level_weights_resumes_as_uniform() {
        let given = parse(&["--level-weights", "2,1,1,1,1,1,1,1"]).unwrap();
        let mut stored = serde_json::to_value(&given).unwrap();
        stored.as_object_mut().unwrap().remove("level_weights");
        let old = Config::from_stored(stored).unwrap();
        assert_eq!(old.level_weights, [1; LEVELS]);
    }

    #[test]
    fn a_run_from_before_part_resumes_training_the_same_part() {
        let given = parse(&[]).unwrap();
        let stored = serde_json::to_value(&given).unwrap();
        assert_eq!(stored["part"], "whole");
        for (flag, part) in [
            (None, Part::Whole),
            (Some("entropy_only"), Part::EntropyModel),
            (Some("post_filter"), Part::PostFilter),
            (Some("decoder"), Part::Decoder),
        ] {
            let mut old = stored.clone();
            let fields = old.as_object_mut().unwrap();
            fields.remove("part");
            for name in ["entropy_only", "post_filter", "decoder"] {
                fields.insert(name.into(), (Some(name) == flag).into());
            }
            assert_eq!(Config::from_stored(old).unwrap().part, part, "{flag:?}");
        }
        // A current checkpoint reads as written.
        let decoder = serde_json::to_value(Config {
            part: Part::Decoder,
            ..given
        })
        .unwrap();
        assert_eq!(Config::from_stored(decoder).unwrap().part, Part::Decoder);
    }
}
