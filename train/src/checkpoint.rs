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
    let current = Model::new(device)
        .with_post_filter(codec::model::post_filter::Shape::DEFAULT)
        .with_global_refs()
        .load_file(ckpt.join("model"), &recorder(), device);
    match current {
        Ok(model) => Ok(model),
        // The record is positional: one written before the slices had a place for global
        // references reads only in that layout.
        Err(e) => legacy::load(ckpt.join("model"), &recorder(), device)
            .map_err(|_| format!("cannot load model from {}: {e}", ckpt.display())),
    }
}

/// Checkpoints written before model 2. Burn's binary record lays out a module's fields by
/// position, and model 2 gave every slice a field (`global`), so a record from before reads
/// only as the model was then: this module keeps that layout, reads such a record, and moves
/// its parameters (their ids, which the optimizer's state is keyed by, with them) into the
/// current model.
mod legacy {
    use std::path::PathBuf;

    use burn::module::{Module, Param};
    use burn::nn::conv::Conv2d;
    use burn::record::{BinFileRecorder, FullPrecisionSettings};
    use burn::tensor::Tensor;
    use burn::tensor::backend::Backend;
    use codec::model::bottleneck::Bottleneck;
    use codec::model::entropy_model::{Aggregate, ChannelCtx, Slice};
    use codec::model::post_filter::{PostFilter, Shape};
    use codec::model::{Analysis, HyperAnalysis, HyperSynthesis, Model, Precision, Synthesis};

    /// `codec::model::Model` as it was, field for field.
    #[derive(Module, Debug)]
    struct OldModel<B: Backend> {
        g_a: Analysis<B>,
        g_s: Synthesis<B>,
        h_a: HyperAnalysis<B>,
        h_s: HyperSynthesis<B>,
        bottleneck: Bottleneck<B>,
        slices: Vec<OldSlice<B>>,
        gain: Param<Tensor<B, 2>>,
        inv_gain: Param<Tensor<B, 2>>,
        post: Option<PostFilter<B>>,
        precision: Precision,
    }

    /// A slice as it was: no `global`.
    #[derive(Module, Debug)]
    struct OldSlice<B: Backend> {
        channel: Option<ChannelCtx<B>>,
        spatial: Conv2d<B>,
        aggregate: Aggregate<B>,
    }

    pub fn load<B: Backend>(
        file: PathBuf,
        recorder: &BinFileRecorder<FullPrecisionSettings>,
        device: &B::Device,
    ) -> Result<Model<B>, String> {
        let template = old(Model::<B>::new(device).with_post_filter(Shape::DEFAULT));
        let loaded = template
            .load_file(file, recorder, device)
            .map_err(|e| e.to_string())?;
        Ok(Model {
            g_a: loaded.g_a,
            g_s: loaded.g_s,
            h_a: loaded.h_a,
            h_s: loaded.h_s,
            bottleneck: loaded.bottleneck,
            slices: (loaded.slices.into_iter())
                .map(|s| Slice {
                    channel: s.channel,
                    spatial: s.spatial,
                    aggregate: s.aggregate,
                    global: None,
                })
                .collect(),
            gain: loaded.gain,
            inv_gain: loaded.inv_gain,
            post: loaded.post,
            precision: loaded.precision,
        })
    }

    /// A model 1 in the old layout.
    fn old<B: Backend>(model: Model<B>) -> OldModel<B> {
        OldModel {
            g_a: model.g_a,
            g_s: model.g_s,
            h_a: model.h_a,
            h_s: model.h_s,
            bottleneck: model.bottleneck,
            slices: (model.slices.into_iter())
                .map(|s| OldSlice {
                    channel: s.channel,
                    spatial: s.spatial,
                    aggregate: s.aggregate,
                })
                .collect(),
            gain: model.gain,
            inv_gain: model.inv_gain,
            post: model.post,
            precision: model.precision,
        }
    }

    /// Saves a model 1 as checkpoints before model 2 did, for the test that they still load.
    #[cfg(test)]
    pub fn save<B: Backend>(
        model: Model<B>,
        file: PathBuf,
        recorder: &BinFileRecorder<FullPrecisionSettings>,
    ) {
        old(model).save_file(file, recorder).unwrap();
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use codec::weights::ModelFile;

    /// A checkpoint written before model 2 (its slices without a `global` field) loads, as
    /// the model 1 it was; one written now, of either model, loads as itself.
    #[test]
    fn checkpoints_of_both_layouts_load() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        for sub in ["old", "new"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let model1 =
            Model::<NdArray>::new(&dev).with_post_filter(codec::model::post_filter::Shape::DEFAULT);
        let want1 = ModelFile::from_model(&model1).hash;
        legacy::save(model1, dir.path().join("old").join("model"), &recorder());
        let loaded = load_model::<NdArray>(&dir.path().join("old"), &dev).unwrap();
        assert!(!loaded.has_global_refs());
        assert_eq!(ModelFile::from_model(&loaded).hash, want1);

        let model2 = Model::<NdArray>::new(&dev).with_global_refs();
        let want2 = ModelFile::from_model(&model2).hash;
        model2
            .save_file(dir.path().join("new").join("model"), &recorder())
            .unwrap();
        let loaded = load_model::<NdArray>(&dir.path().join("new"), &dev).unwrap();
        assert!(loaded.has_global_refs());
        assert_eq!(ModelFile::from_model(&loaded).hash, want2);
    }
}
