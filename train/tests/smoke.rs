//! A tiny real training run on the default backend: logs, checkpoints, resume, export, and the
//! exported model coding an image.

use std::path::Path;
use std::process::Command;

use codec::backend::{self, BackendKind, Job};
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::weights::ModelFile;

fn picture(w: u32, h: u32, phase: f32) -> Planar {
    Planar::pattern(w, h, 3, 8, phase)
}

fn train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ember-train"))
        .args(args)
        .output()
        .unwrap()
}

/// `ember-train run --resume` of `run` with its schedule set to `steps`, all else stored.
fn resume(run: &Path, steps: &str) -> std::process::Output {
    train(&[
        "run",
        "--run",
        run.to_str().unwrap(),
        "--steps",
        steps,
        "--resume",
    ])
}

/// The arguments `args` with the run folder `run` replaced by `other`.
fn with_run<'a>(args: &[&'a str], run: &Path, other: &'a Path) -> Vec<&'a str> {
    args.iter()
        .map(|&a| {
            if Path::new(a) == run {
                other.to_str().unwrap()
            } else {
                a
            }
        })
        .collect()
}

fn steps_logged(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

struct RoundTrip(ModelFile, Planar);

impl Job for RoundTrip {
    type Output = (Vec<u8>, Planar);
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let codec = Codec::<B>::new(self.0, device).unwrap();
        let bytes = codec.compress(&self.1, 3.0).unwrap();
        let out = codec.decompress(&bytes).unwrap();
        (bytes, out)
    }
}

#[test]
fn tiny_run_checkpoints_resumes_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let (data, val, run) = (
        dir.path().join("data"),
        dir.path().join("val"),
        dir.path().join("run"),
    );
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::create_dir_all(&val).unwrap();
    for i in 0..4 {
        picture(96, 80, i as f32)
            .save_png(&data.join("sub").join(format!("{i}.png")))
            .unwrap();
    }
    std::fs::write(data.join("README.md"), "not an image").unwrap();
    picture(64, 64, 9.0).save_png(&val.join("v.png")).unwrap();
    let common = [
        "--run",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--val",
        val.to_str().unwrap(),
        "--val-images",
        "1",
        "--val-every",
        "2",
        "--batch",
        "2",
        "--crop",
        "64",
        "--warmup",
        "1",
        "--checkpoint-minutes",
        "0",
    ];

    let out = train(&[&["run", "--steps", "3"], &common[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(steps_logged(&run), vec![1]);
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert!(
        log.contains("\"validation\""),
        "no validation in log:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("checkpoints/latest")).unwrap(),
        "step-00000003"
    );

    // A resumed run keeps its settings: changing one that defines it is refused...
    let out = train(
        &[
            &["run", "--steps", "5", "--resume", "--batch", "4"],
            &common[..2],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--batch 4 differs"),
        "{err}"
    );
    // ...and `--resume` alone (here with a longer schedule) continues with the stored ones.
    let out = resume(&run, "5");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("resuming from"),
        "{err}"
    );
    assert!(err.contains("stopped at step 5"), "{err}");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/step-00000005/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            &state["config"]["batch"],
            &state["config"]["crop"],
            &state["config"]["steps"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(64),
            &serde_json::json!(5)
        )
    );
    // Only the two newest checkpoints are kept.
    let mut kept: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["latest", "step-00000004", "step-00000005"]);

    let model = dir.path().join("m.safetensors");
    let out = train(&[
        "export",
        run.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A new run starts from an exported model's weights: exporting it before any step gives
    // the same file back; with --reset-gains only the gains change, to the √λ ladder.
    let start_from = |name: &str, extra: &[&str]| {
        let run2 = dir.path().join(name);
        let mut args = vec!["run", "--steps", "0", "--init", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend(with_run(&common, &run, &run2));
        let out = train(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exported = dir.path().join(format!("{name}.safetensors"));
        let out = train(&[
            "export",
            run2.to_str().unwrap(),
            "-o",
            exported.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        ModelFile::load(&exported).unwrap()
    };
    let original = ModelFile::load(&model).unwrap();
    // A checkpoint without a post-filter resumes and exports without one.
    assert!(!original.has_post_filter());
    assert_eq!(start_from("same", &[]).hash, original.hash);
    let reset = start_from("reset", &["--reset-gains"]);
    assert_ne!(reset.hash, original.hash);
    assert_eq!(
        reset
            .tensor("g_s.u1.conv.weight", &[4 * 128, 192, 3, 3])
            .unwrap(),
        original
            .tensor("g_s.u1.conv.weight", &[4 * 128, 192, 3, 3])
            .unwrap()
    );
    let gain = reset.tensor("gain", &[8, 192]).unwrap();
    for c in [0, 77, 191] {
        let ratio = gain[7 * 192 + c] / gain[c];
        assert!((ratio - 10.0).abs() < 1e-3, "q8/q1 gain ratio {ratio}");
    }
    // A learning rate that wrecks the model: a validation after the first steps costs far
    // more than the one at the start, and the run stops with an error, writing no checkpoint.
    let wrecked = dir.path().join("wrecked");
    let mut args = vec!["run", "--init", model.to_str().unwrap()];
    args.extend(with_run(&common, &run, &wrecked));
    args.extend(["--lr", "1", "--steps", "6", "--val-every", "1"]);
    let out = train(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("training diverged: at step 1 the validation"),
        "{err}"
    );
    assert!(!wrecked.join("checkpoints").join("latest").exists());
    // Without validation the wrecked model's batches all give a non-finite loss, and the run
    // stops after 20 of them instead of skipping to the end of its schedule.
    std::fs::remove_dir_all(&wrecked).unwrap();
    args.extend(["--steps", "100", "--val-every", "0"]);
    let out = train(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the 20 batches up to step 21 all gave a non-finite loss"),
        "{err}"
    );
    // The last checkpoint is the periodic one after the wrecking step (written every step
    // here), not one of the stop.
    let latest = std::fs::read_to_string(wrecked.join("checkpoints").join("latest")).unwrap();
    assert_eq!(latest.trim(), "step-00000001");

    let file = ModelFile::load(&model).unwrap();
    let img = picture(40, 24, 1.0);
    let (bytes, rec) = backend::run(
        codec::backend::default_kind().unwrap(),
        RoundTrip(file, img.clone()),
    )
    .unwrap();
    assert!(!bytes.is_empty());
    assert_eq!((rec.width, rec.height), (40, 24));
}

#[test]
fn bad_arguments_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(&[
        "run",
        "--data",
        dir.path().to_str().unwrap(),
        "--run",
        dir.path().join("r").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no readable images"));
    let out = train(&[
        "export",
        dir.path().to_str().unwrap(),
        "-o",
        "x.safetensors",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checkpoint"));
}

#[test]
fn pack_shrinks_a_training_set_and_bench_prints_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let (src, packed) = (dir.path().join("src"), dir.path().join("packed"));
    std::fs::create_dir_all(src.join("a")).unwrap();
    picture(300, 200, 0.0)
        .save_png(&src.join("a/wide.png"))
        .unwrap();
    picture(90, 120, 1.0)
        .save_png(&src.join("small.png"))
        .unwrap();
    std::fs::write(src.join("notes.txt"), "x").unwrap();
    let out = train(&[
        "pack",
        src.to_str().unwrap(),
        "-o",
        packed.to_str().unwrap(),
        "--short-side",
        "100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sizes: Vec<(u32, u32)> = std::fs::read_dir(&packed)
        .unwrap()
        .map(|e| image::image_dimensions(e.unwrap().path()).unwrap())
        .collect();
    sizes.sort();
    // Shorter side 100 exactly: downscaled from 200, upscaled from 90.
    assert_eq!(sizes, vec![(100, 133), (150, 100)]);

    let out = train(&["bench", "--batch", "1", "--crop", "64", "--steps", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("| 1 | 64² |") && text.contains("img/s"),
        "{text}"
    );
    let out = train(&["bench", "--crop", "100"]);
    assert_eq!(out.status.code(), Some(1));

    // The step of a model file, post-filter and all (what a training leg is sized from).
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ember-mrc-v1.safetensors");
    let args = [
        "bench", "--batch", "1", "--crop", "64", "--steps", "1", "--init",
    ];
    let out = train(&[&args[..], &[shipped.to_str().unwrap()]].concat());
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("| 1 | 64² |"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = train(&[&args[..], &["no-such-model.safetensors"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// A folder with one 64×64 training picture.
fn one_picture(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    picture(64, 64, 0.5).save_png(&data.join("a.png")).unwrap();
    data
}

/// `ember-train run` of `run` on `kind`: one step of one 64² crop from `data`, no validation.
fn one_step(kind: BackendKind, data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let args = [
        "run",
        "--backend",
        kind.name(),
        "--run",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--val-every",
        "0",
        "--steps",
        "1",
        "--batch",
        "1",
        "--crop",
        "64",
    ];
    train(&[&args[..], extra].concat())
}

/// Every CPU backend built into the binary trains (one step of one tiny crop): only LibTorch
/// is fast enough for real runs, but the others must keep working.
#[test]
fn every_cpu_backend_takes_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = one_picture(dir.path());
    for kind in codec::backend::built() {
        if !matches!(
            kind,
            BackendKind::Tch | BackendKind::Ndarray | BackendKind::Wgpu
        ) {
            continue;
        }
        let run = dir.path().join(kind.name());
        let out = one_step(kind, &data, &run, &[]);
        assert!(
            out.status.success(),
            "{}: {}",
            kind.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(steps_logged(&run), vec![1], "{}", kind.name());
    }
}

/// `--precision bf16` trains on LibTorch, is kept on resuming, and is refused clearly on a
/// backend without bf16 kernels.
#[test]
fn bf16_precision_trains_on_libtorch_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = one_picture(dir.path());
    for kind in codec::backend::built() {
        let run = dir.path().join(kind.name());
        let out = one_step(kind, &data, &run, &["--precision", "bf16"]);
        let err = String::from_utf8_lossy(&out.stderr);
        if matches!(kind, BackendKind::Tch) {
            assert!(out.status.success(), "{err}");
            assert_eq!(steps_logged(&run), vec![1]);
            let out = resume(&run, "2");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let state =
                std::fs::read_to_string(run.join("checkpoints/step-00000002/state.json")).unwrap();
            let state: serde_json::Value = serde_json::from_str(&state).unwrap();
            assert_eq!(state["config"]["precision"], "bf16", "{state}");
        } else if !matches!(kind, BackendKind::TchCuda) {
            assert_eq!(out.status.code(), Some(1), "{}: {err}", kind.name());
            assert!(err.contains("needs a LibTorch backend"), "{err}");
            assert!(!run.join("checkpoints").exists());
        }
    }
}

/// What the runs that train one part of a model (`--entropy-only`, `--post-filter`,
/// `--decoder`) start from: a temporary folder with three small training pictures and a fresh
/// model file to `--init` from, and the `run` arguments they share.
struct FrozenRun {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    run: std::path::PathBuf,
    start: std::path::PathBuf,
}

impl FrozenRun {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (data, run) = (dir.path().join("data"), dir.path().join("run"));
        let start = dir.path().join("start.safetensors");
        std::fs::create_dir_all(&data).unwrap();
        for i in 0..3 {
            picture(80, 72, i as f32)
                .save_png(&data.join(format!("{i}.png")))
                .unwrap();
        }
        assert!(
            train(&["init", "-o", start.to_str().unwrap()])
                .status
                .success()
        );
        Self {
            dir,
            data,
            run,
            start,
        }
    }

    /// `ember-train run` of this run, two 64² crops a step, no validation, plus `extra`.
    fn run_with(&self, extra: &[&str]) -> std::process::Output {
        let base = [
            "run",
            "--run",
            self.run.to_str().unwrap(),
            "--data",
            self.data.to_str().unwrap(),
            "--val-every",
            "0",
            "--batch",
            "2",
            "--crop",
            "64",
            "--warmup",
            "1",
            "--lr",
            "1e-3",
        ];
        train(&[&base[..], extra].concat())
    }

    /// A run with `flag` and no `--init` is refused, and the error says what is missing.
    fn needs_init(&self, flag: &str) {
        let out = self.run_with(&[flag, "--steps", "1"]);
        assert!(!out.status.success(), "{flag} without --init ran");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--init"));
    }

    /// A run that starts from the shipped model, after checking that `flag` needs a start.
    fn from_shipped(flag: &str) -> Self {
        let mut frozen = Self::new();
        frozen.needs_init(flag);
        frozen.start =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ember-mrc-v1.safetensors");
        frozen
    }

    /// Three steps with `flags` on the cached latents of five crops, resumed to five; returns
    /// the start model and the export.
    fn on_latents_and_resumed(&self, flags: &[&str]) -> (ModelFile, ModelFile) {
        let start = self.start.to_str().unwrap();
        let base = ["--init", start, "--latent-crops", "5", "--steps", "3"];
        for out in [
            self.run_with(&[&base[..], flags].concat()),
            resume(&self.run, "5"),
        ] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.start_and_export()
    }

    /// The model the run started from and the run's export.
    fn start_and_export(&self) -> (ModelFile, ModelFile) {
        let trained = self.dir.path().join("trained.safetensors");
        let run = self.run.to_str().unwrap();
        let export = train(&["export", run, "-o", trained.to_str().unwrap()]);
        assert!(export.status.success());
        (
            ModelFile::load(&self.start).unwrap(),
            ModelFile::load(&trained).unwrap(),
        )
    }
}

/// `--entropy-only` trains the entropy model on cached latents and leaves the transforms and
/// gains exactly as they were; it needs a model to start from.
#[test]
fn entropy_only_run_trains_the_entropy_model_alone() {
    let frozen = FrozenRun::new();
    let (run, start) = (&frozen.run, &frozen.start);
    frozen.needs_init("--entropy-only");

    for absurd in ["0", "100000000"] {
        let out = frozen.run_with(&[
            "--entropy-only",
            "--init",
            start.to_str().unwrap(),
            "--latent-crops",
            absurd,
            "--steps",
            "1",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1) && err.contains("--latent-crops must be positive"),
            "{err}"
        );
    }
    let out = frozen.run_with(&[
        "--entropy-only",
        "--init",
        start.to_str().unwrap(),
        "--latent-crops",
        "5",
        "--steps",
        "4",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("caching the latents of 5 crops"), "{err}");
    assert_eq!(steps_logged(run), vec![1]);
    // A resumed run stays entropy-only and reads the latents it stored instead of computing
    // them again; a damaged store is computed again, with a warning.
    let out = resume(run, "6");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("latents from"),
        "{err}"
    );
    let store = run.join("latents.bin");
    let len = std::fs::metadata(&store).unwrap().len();
    assert_eq!(len, 32 + 5 * 192 * 4 * 4 * 4);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(len - 4)
        .unwrap();
    let out = resume(run, "7");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("truncated")
            && err.contains("caching the latents of 5 crops"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&store).unwrap().len(), len);

    let (before, after) = frozen.start_and_export();
    let mut changed = Vec::new();
    for (name, t) in &before.tensors {
        let frozen = name.starts_with("g_a.") || name.starts_with("g_s.") || name.contains("gain");
        let same = after.tensors[name].data == t.data;
        if frozen {
            assert!(same, "{name} changed in an entropy-only run");
        } else if !same {
            changed.push(name.clone());
        }
    }
    for part in ["h_a.", "h_s.", "slices.4.", "bottleneck."] {
        assert!(
            changed.iter().any(|n| n.starts_with(part)),
            "no {part} tensor trained: {changed:?}"
        );
    }
}

impl FrozenRun {
    /// A run that trains one part (`flag`, stored as `part` in the run's configuration) from
    /// the fresh model: three steps, then resumed to five, which keeps the flag. Returns the
    /// model it started from and the run's export, having checked that every tensor of the
    /// start for which `trains` is false kept its value exactly.
    fn train_part(
        &self,
        flags: &[&str],
        part: &str,
        trains: impl Fn(&str) -> bool,
    ) -> (ModelFile, ModelFile) {
        let flag = flags[0];
        self.needs_init(flag);
        let init = ["--init", self.start.to_str().unwrap()];
        let out = self.run_with(&[&init[..], &[flag, "--entropy-only", "--steps", "1"]].concat());
        assert!(!out.status.success(), "{flag} with --entropy-only ran");

        let out = self.run_with(&[&init[..], flags, &["--steps", "3"]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let out = resume(&self.run, "5");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state =
            std::fs::read_to_string(self.run.join("checkpoints/step-00000005/state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(state["config"]["part"], part, "{state}");

        let (before, after) = self.start_and_export();
        for (name, t) in before.tensors.iter().filter(|(name, _)| !trains(name)) {
            assert!(
                after.tensors[name].data == t.data,
                "{name} changed in a {flag} run"
            );
        }
        assert_eq!(before.factorized, after.factorized);
        (before, after)
    }
}

/// Codes one picture with two models whose encoder and entropy model are the same: the
/// streams carry the same symbols, i.e. are the same bytes but for the header's weights hash
/// (bytes 6–13, SPEC.md) and the CRC after everything (the last 4), and decode to different
/// pictures.
fn same_symbols_other_picture(before: ModelFile, after: ModelFile) {
    let img = picture(40, 24, 1.0);
    let kind = codec::backend::default_kind().unwrap();
    let (before_bytes, before) = backend::run(kind, RoundTrip(before, img.clone())).unwrap();
    let (after_bytes, after) = backend::run(kind, RoundTrip(after, img)).unwrap();
    let n = before_bytes.len();
    assert_eq!(n, after_bytes.len());
    assert_eq!(before_bytes[..6], after_bytes[..6]);
    assert_eq!(before_bytes[14..n - 4], after_bytes[14..n - 4]);
    assert_ne!(before.rgb, after.rgb);
}

/// `--post-filter` adds a post-filter to the model it starts from and trains it alone: every
/// other weight keeps its value exactly, a resumed run keeps the filter, and the exported model
/// codes the same symbols into a different reconstruction.
#[test]
fn post_filter_run_trains_the_filter_alone() {
    let frozen = FrozenRun::new();
    let (before, after) = frozen.train_part(&["--post-filter"], "post-filter", |_| false);
    assert!(!before.has_post_filter() && after.has_post_filter());
    assert_filter_trained(&after);
    same_symbols_other_picture(before, after);
}

/// A new filter's last layer starts at zero; the five steps of a run that trained it have
/// moved it.
fn assert_filter_trained(model: &ModelFile) {
    assert!(
        model.tensors["post.c3.weight"]
            .data
            .iter()
            .any(|&v| v != 0.0),
        "the post-filter did not train"
    );
}

/// `--new-filter 8/2` trains a new filter on the image folded to half resolution, and the
/// resumed run and the export keep its shape.
#[test]
fn a_new_filter_run_trains_a_folded_filter() {
    let frozen = FrozenRun::new();
    let flags = ["--post-filter", "--new-filter", "8/2"];
    let (before, after) = frozen.train_part(&flags, "post-filter", |_| false);
    assert!(!before.has_post_filter());
    assert_eq!(after.tensors["post.c1.weight"].shape, [8, 12, 3, 3]);
    assert_eq!(after.tensors["post.c3.weight"].shape, [12, 8, 3, 3]);
    assert_filter_trained(&after);
    same_symbols_other_picture(before, after);
}

/// `--decoder` trains the synthesis transform and its inverse gains on the frozen encoder's
/// latents: the encoder, the entropy model and the encoder's gains keep their values exactly,
/// so the exported model codes the same symbols into a different reconstruction.
#[test]
fn decoder_run_trains_the_decoder_alone() {
    let frozen = FrozenRun::new();
    let decoder = |name: &str| name.starts_with("g_s.") || name == "inv_gain";
    let (before, after) = frozen.train_part(&["--decoder"], "decoder", decoder);
    // The start has no post-filter, and a decoder run adds none.
    assert!(!before.has_post_filter() && !after.has_post_filter());
    for name in ["g_s.u1.conv.weight", "inv_gain"] {
        assert!(
            after.tensors[name].data != before.tensors[name].data,
            "{name} did not train"
        );
    }
    same_symbols_other_picture(before, after);
}

/// The step the run's `latest` checkpoint names (0 before the first), after checking that the
/// checkpoint it names is complete: its state parses and records that step.
fn checkpointed_step(run: &Path) -> u64 {
    let Ok(name) = std::fs::read_to_string(run.join("checkpoints/latest")) else {
        return 0;
    };
    let step: u64 = name.trim().trim_start_matches("step-").parse().unwrap();
    let state = run.join("checkpoints").join(name.trim()).join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(state["step"].as_u64(), Some(step), "{}", state);
    step
}

/// Starts `ember-train ARGS`, waits until two more checkpoints than `run` had are written (one
/// per step here), waits `delay` more, so that the signal lands at a different point of a
/// step or of a checkpoint's writing each time, then sends `signal`.
fn interrupt(args: &[&str], run: &Path, delay_ms: u64, signal: &str) -> std::process::Output {
    let before = checkpointed_step(run);
    let child = Command::new(env!("CARGO_BIN_EXE_ember-train"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // A checkpoint being renamed into place can briefly be half-visible to this poll.
    let step = || std::panic::catch_unwind(|| checkpointed_step(run)).unwrap_or(before);
    while step() < before + 2 {
        assert!(
            started.elapsed().as_secs() < 300,
            "no progress in 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-s", signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait_with_output().unwrap()
}

/// A run killed outright (SIGKILL, at several points of its steps and checkpoint writes)
/// leaves a complete last checkpoint and resumes from it; one stopped by SIGTERM checkpoints
/// the step it stopped at and exits 0; `--minutes` ends a run on time. Nothing is lost beyond
/// the last checkpoint, and the result exports.
#[test]
fn killed_and_stopped_runs_resume_from_their_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = one_picture(dir.path());
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let start = [
        "run",
        "--run",
        run_s,
        "--data",
        data.to_str().unwrap(),
        "--val-every",
        "0",
        "--batch",
        "1",
        "--crop",
        "64",
        "--warmup",
        "1",
        "--steps",
        "100000",
        "--checkpoint-minutes",
        "0",
    ];
    let resume = ["run", "--run", run_s, "--resume"];
    let out = interrupt(&start, &run, 0, "KILL");
    assert!(!out.status.success());
    for delay_ms in [5, 40, 150] {
        let before = checkpointed_step(&run);
        let out = interrupt(&resume, &run, delay_ms, "KILL");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("(step {before})")), "{err}");
        assert!(checkpointed_step(&run) >= before + 2);
    }
    let out = interrupt(&resume, &run, 60, "TERM");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stopped = checkpointed_step(&run);
    assert!(
        err.contains(&format!("stopped at step {stopped} ")),
        "{err}"
    );

    // --minutes stops a run that would take far longer, and checkpoints where it stopped.
    let t = std::time::Instant::now();
    let out = train(&[&resume[..], &["--minutes", "0.02"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(t.elapsed().as_secs() < 120, "took {:?}", t.elapsed());
    let at = checkpointed_step(&run);
    assert!(at > stopped && at < 100_000, "{err}");
    assert!(err.contains(&format!("stopped at step {at} ")), "{err}");

    let model = dir.path().join("m.safetensors");
    let out = train(&["export", run_s, "-o", model.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ModelFile::load(&model).is_ok());
}

/// On a full disk, training stops at its first checkpoint and export fails, each with one
/// error line, leaving no checkpoint and no partial file.
#[test]
fn a_full_disk_stops_training_and_export_in_one_line() {
    let disk = match cli::testing::FullDisk::new() {
        Ok(disk) => disk,
        Err(why) => return cli::skip_test(why),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = one_picture(dir.path());
    let full_run = disk.path().join("run");
    let out = one_step(
        codec::backend::default_kind().unwrap(),
        &data,
        &full_run,
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with("ember-train: error: ") && errors[0].contains("No space left"),
        "{err}"
    );
    assert!(!full_run.join("checkpoints/latest").exists());

    let run = dir.path().join("run");
    let out = one_step(codec::backend::default_kind().unwrap(), &data, &run, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = disk.path().join("m.safetensors");
    let out = train(&[
        "export",
        run.to_str().unwrap(),
        "-o",
        model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left"), "{err}");
    // The run's folder and its empty log are all that is left: no checkpoint, no model.
    let left: Vec<_> = disk.leftovers();
    assert!(
        left.iter().all(|p| p.ends_with("run/log.jsonl")),
        "{left:?}"
    );
}

/// `--global-refs` gives the start's entropy model global references (model 2) and an
/// entropy-only run trains them: they survive a resume, the export is a model 2 whose
/// aggregation weights for the references have moved from zero, and it codes a picture. It
/// starts from the shipped model: a fresh model's latents round to zero almost everywhere,
/// so its anchors carry no residual for the references to read, and nothing to learn from.
#[test]
fn a_global_refs_run_trains_a_model_2() {
    use codec::model::arch::{AGG, aggregate_in};
    use codec::zoo::ModelId;
    let frozen = FrozenRun::from_shipped("--global-refs");
    let (before, after) = frozen.on_latents_and_resumed(&["--entropy-only", "--global-refs"]);
    assert_eq!(
        (before.model, after.model),
        (ModelId::MrcV1, ModelId::MrcV2)
    );
    let c1 = &after.tensors["slices.4.aggregate.c1.weight"];
    let (old, new) = (aggregate_in(4, false), aggregate_in(4, true));
    assert_eq!(c1.shape, [AGG, new, 1, 1]);
    let references_weighed = (0..AGG)
        .flat_map(|o| (old..new).map(move |i| o * new + i))
        .any(|at| c1.data[at] != 0.0);
    assert!(
        references_weighed,
        "the references' aggregation weights did not train"
    );
    assert!(after.tensors.contains_key("slices.4.global.inter.q.weight"));
    let kind = codec::backend::default_kind().unwrap();
    let (bytes, out) = backend::run(kind, RoundTrip(after, picture(40, 24, 1.0))).unwrap();
    assert_eq!(
        codec::bitstream::read(&bytes).unwrap().header.model,
        ModelId::MrcV2
    );
    assert_eq!((out.width, out.height), (40, 24));
}

/// `--lrp` gives the --init model a latent residual predictor that predicts nothing, and a
/// `--decoder` run trains it with the synthesis: it survives a resume, the export has one
/// that predicts something, the encoder side is as it was, and its streams hold the start
/// model's symbols.
#[test]
fn a_decoder_run_with_lrp_trains_a_residual_predictor() {
    let frozen = FrozenRun::from_shipped("--lrp");
    let start = frozen.start.to_str().unwrap();
    for out in [
        frozen.run_with(&["--init", start, "--decoder", "--lrp", "--steps", "2"]),
        resume(&frozen.run, "3"),
    ] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (before, after) = frozen.start_and_export();
    assert!(!before.has_lrp() && after.has_lrp());
    assert!(
        after.tensors["lrp.c3.weight"]
            .data
            .iter()
            .any(|&v| v != 0.0),
        "the predictor's last layer did not train"
    );
    for (name, t) in &before.tensors {
        if !name.starts_with("g_s.") && !name.starts_with("post.") && name != "inv_gain" {
            assert_eq!(t.data, after.tensors[name].data, "{name} changed");
        }
    }
    // The coded symbols are the payload; the header differs in the weights' hash.
    let payload = |file: &ModelFile| {
        let kind = codec::backend::default_kind().unwrap();
        let (bytes, _) = backend::run(kind, RoundTrip(file.clone(), picture(40, 24, 1.0))).unwrap();
        match codec::bitstream::read(&bytes).unwrap().payload {
            codec::bitstream::Payload::Single(words) => words.to_vec(),
            _ => unreachable!("version 2 streams have one payload"),
        }
    };
    assert_eq!(payload(&before), payload(&after));
}

/// `--ema` keeps a weight average through checkpoints and resumes, and `export --ema` writes
/// it: with a decay near 0 the average is the last weights, near 1 the weights the run
/// started from. A run without one says so, and a resumed run keeps its decay.
#[test]
fn a_run_with_ema_exports_its_weight_average() {
    // Largest difference between two files' tensors, relative to the tensor's largest value.
    let distance = |a: &ModelFile, b: &ModelFile| {
        a.tensors
            .iter()
            .map(|(name, t)| {
                let u = &b.tensors[name].data;
                let scale = t.data.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                t.data
                    .iter()
                    .zip(u)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
            })
            .fold(0f32, f32::max)
    };
    for (decay, follows_last) in [("0.000001", true), ("0.999999", false)] {
        let frozen = FrozenRun::new();
        let start = frozen.start.to_str().unwrap();
        for out in [
            frozen.run_with(&["--init", start, "--ema", decay, "--steps", "2"]),
            resume(&frozen.run, "3"),
        ] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ckpt = frozen.run.join("checkpoints/step-00000003");
        assert!(ckpt.join("average.mpk").is_file());
        let averaged = frozen.dir.path().join("averaged.safetensors");
        let run = frozen.run.to_str().unwrap();
        let out = train(&["export", run, "--ema", "-o", averaged.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (before, after) = frozen.start_and_export();
        let averaged = ModelFile::load(&averaged).unwrap();
        let moved = distance(&before, &after);
        assert!(moved > 1e-3, "three steps at 1e-3 moved nothing ({moved})");
        let (near, far) = if follows_last {
            (distance(&averaged, &after), distance(&averaged, &before))
        } else {
            (distance(&averaged, &before), distance(&averaged, &after))
        };
        assert!(
            near < moved / 10.0 && far > moved / 2.0,
            "decay {decay}: {near} from the expected weights, {far} from the others, {moved} moved"
        );
        // A resumed run keeps its decay.
        let out = train(&["run", "--run", run, "--resume", "--ema", "0.5"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--ema"));
    }

    let frozen = FrozenRun::new();
    let out = frozen.run_with(&["--ema", "1.5", "--steps", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0 and 1"));
    let start = frozen.start.to_str().unwrap();
    assert!(
        frozen
            .run_with(&["--init", start, "--steps", "1"])
            .status
            .success()
    );
    let out = train(&[
        "export",
        frozen.run.to_str().unwrap(),
        "--ema",
        "-o",
        frozen.dir.path().join("x.safetensors").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no weight average") && err.lines().count() == 1,
        "{err}"
    );
}
