//! Checkpoints: model, optimizer state, step, RNG state and configuration, written so that a
//! run killed at any moment leaves the previous checkpoint intact.
//!
//! Each checkpoint is a folder `step-NNNNNNNN` under `<run>/checkpoints/`. It is written as
//! `step-NNNNNNNN.tmp` and renamed when complete; then `<run>/checkpoints/latest` is replaced
//! atomically with its name. Only folders named in `latest` are ever read, so a half-written
//! `.tmp` folder is ignored (and removed by the next save). The two newest are kept.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use codec::model::Model;

use crate::rng::Rng;

/// Bookkeeping saved beside the weights.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub step: u64,
    pub rng: Rng,
    /// Seconds of training so far, over all resumptions.
    pub seconds: f64,
    /// Images seen so far.
    pub images: u64,
    pub config: serde_json::Value,
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

pub fn dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    let name = std::fs::read_to_string(dir(run).join("latest")).ok()?;
    let p = dir(run).join(name.trim());
    p.join("state.json").exists().then_some(p)
}

pub fn save<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    run: &Path,
    model: &Model<B>,
    optim: &O,
    state: &State,
) -> Result<PathBuf, String> {
    let base = dir(run);
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let name = format!("step-{:08}", state.step);
    let tmp = base.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| {
        std::fs::create_dir_all(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        model
            .clone()
            .save_file(tmp.join("model"), &recorder())
            .map_err(|e| format!("cannot save model: {e}"))?;
        recorder()
            .record(optim.to_record(), tmp.join("optim"))
            .map_err(|e| format!("cannot save optimizer: {e}"))?;
        let json = serde_json::to_vec_pretty(state).expect("state serializes");
        std::fs::write(tmp.join("state.json"), json).map_err(|e| format!("cannot write state: {e}"))
    })();
    if let Err(e) = written {
        // A half-written checkpoint is never read, but it would hold the space a full disk lacks.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let done = base.join(&name);
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(&tmp, &done).map_err(|e| format!("cannot finish checkpoint: {e}"))?;
    codec::fsutil::write_atomic(&base.join("latest"), name.as_bytes())
        .map_err(|e| format!("cannot update latest: {e}"))?;
    prune(&base, 2);
    Ok(done)
}

/// Removes all but the `keep` newest complete checkpoints and any leftover `.tmp` folders.
fn prune(base: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("step-"))
        .collect();
    names.sort();
    let complete: Vec<&String> = names.iter().filter(|n| !n.ends_with(".tmp")).collect();
    for n in names
        .iter()
        .filter(|n| n.ends_with(".tmp"))
        .chain(complete.iter().rev().skip(keep).copied())
    {
        let _ = std::fs::remove_dir_all(base.join(n));
    }
}

pub fn load_state(ckpt: &Path) -> Result<State, String> {
    let bytes = std::fs::read(ckpt.join("state.json"))
        .map_err(|e| format!("cannot read {}: {e}", ckpt.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("corrupt checkpoint state in {}: {e}", ckpt.display()))
}

pub fn load_model<B: burn::tensor::backend::Backend>(
    ckpt: &Path,
    device: &B::Device,
) -> Result<Model<B>, String> {
    // Built with a post-filter and global references, which loading drops again when the
    // checkpoint has none (Burn loads an `Option` module only where both sides have it); the
    // loaded tensors bring their own shapes, so a filter of any width, and an aggregation
    // with or without the references' inputs, comes back as it was saved.
    Model::new(device)
        .with_post_filter(codec::model::post_filter::Shape::DEFAULT)
        .with_global_refs()
        .load_file(ckpt.join("model"), &recorder(), device)
        .map_err(|e| format!("cannot load model from {}: {e}", ckpt.display()))
}

pub fn load_optim<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    ckpt: &Path,
    optim: O,
    device: &B::Device,
) -> Result<O, String> {
    let record = recorder().load(ckpt.join("optim"), device).map_err(|e| {
        format!(
            "cannot load optimizer from {}: {e} (checkpoints written before ember-train's \
                 flat Adam hold Burn's per-parameter Adam state and cannot be resumed: export \
                 the checkpoint and start a new run with --init)",
            ckpt.display()
        )
    })?;
    Ok(optim.load_record(record))
}
