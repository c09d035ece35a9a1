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
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use codec::model::Model;

use crate::average::Average;

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

/// Burn's named MessagePack record: fields are read by name, so a checkpoint still loads after
/// the model gains an optional part (it loads without it), which the positional binary record
/// of earlier checkpoints ([`legacy`]) did not allow. Made in memory and written here, so that
/// a failed write reports the system's reason (a full disk says so), which the record's own
/// file writer loses.
fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}

/// Writes `record` as `<what>.mpk` in the folder `dir`.
fn write_record<B: burn::tensor::backend::Backend, R: Record<B>>(
    record: R,
    dir: &Path,
    what: &str,
) -> Result<(), String> {
    let bytes = Recorder::<B>::record(&recorder(), record, ())
        .map_err(|e| format!("cannot save {what}: {e}"))?;
    std::fs::write(dir.join(format!("{what}.mpk")), bytes)
        .map_err(|e| format!("cannot save {what}: {e}"))
}

/// Reads the record `<what>.mpk` from the checkpoint folder `ckpt`; the error says why, not
/// what.
fn read_record<B: burn::tensor::backend::Backend, R: Record<B>>(
    ckpt: &Path,
    what: &str,
    device: &B::Device,
) -> Result<R, String> {
    let file = ckpt.join(format!("{what}.mpk"));
    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    Recorder::<B>::load(&recorder(), bytes, device).map_err(|e| e.to_string())
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

/// Writes a checkpoint of `model`, `optim`, `state` and, where the run keeps one, the weight
/// average ([`crate::average`]).
pub fn save<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    run: &Path,
    model: &Model<B>,
    optim: &O,
    average: Option<&Average<B::InnerBackend>>,
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
        write_record::<B, _>(model.clone().into_record(), &tmp, "model")?;
        write_record::<B, _>(optim.to_record(), &tmp, "optim")?;
        if let Some(a) = average {
            write_record::<B::InnerBackend, _>(a.mean().clone(), &tmp, AVERAGE)?;
        }
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

/// The record name of the weight average in a checkpoint folder.
const AVERAGE: &str = "average";

/// The weight average a checkpoint holds, `None` where it holds none (the run kept none, or
/// was checkpointed before it did).
pub fn load_average<B: burn::tensor::backend::Backend>(
    ckpt: &Path,
    device: &B::Device,
) -> Result<Option<Tensor<B, 1>>, String> {
    if !ckpt.join(format!("{AVERAGE}.mpk")).exists() {
        return Ok(None);
    }
    read_record::<B, Tensor<B, 1>>(ckpt, AVERAGE, device)
        .map(Some)
        .map_err(|e| format!("cannot load the weight average of {}: {e}", ckpt.display()))
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
    // Built with every optional part (post-filter, global references, residual predictor),
    // which loading drops again where the checkpoint has none (Burn loads an `Option` module
    // only where both sides have it); the loaded tensors bring their own shapes, so a filter
    // of any width, and an aggregation with or without the references' inputs, comes back as
    // it was saved.
    let template = Model::new(device)
        .with_post_filter(codec::model::post_filter::Shape::DEFAULT)
        .with_global_refs()
        .with_lrp();
    if !ckpt.join("model.bin").exists() {
        return read_record::<B, _>(ckpt, "model", device)
            .map(|record| template.load_record(record))
            .map_err(|e| format!("cannot load model from {}: {e}", ckpt.display()));
    }
    // Written in Burn's positional binary record before checkpoints named their fields: read
    // in the layout of its time, newest first.
    legacy::load(ckpt.join("model"), device)
        .map_err(|e| format!("cannot load model from {}: {e}", ckpt.display()))
}

/// Checkpoints written in Burn's binary record (`model.bin`, `optim.bin`), before they were
/// written with named fields. That record lays out a module's fields by position, so each
/// layout the model has had reads only as itself: before model 2 (slices without `global`),
/// and model 2 before the residual predictor (`Model` without `lrp`). This module keeps both
/// layouts, reads a record in whichever fits, and moves its parameters (their ids, which the
/// optimizer's state is keyed by, with them) into the current model.
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

    pub fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
        BinFileRecorder::new()
    }

    /// `codec::model::Model` as it was before `lrp`, field for field, with slices of type `L`.
    #[derive(Module, Debug)]
    struct OldModel<B: Backend, L> {
        g_a: Analysis<B>,
        g_s: Synthesis<B>,
        h_a: HyperAnalysis<B>,
        h_s: HyperSynthesis<B>,
        bottleneck: Bottleneck<B>,
        slices: Vec<L>,
        gain: Param<Tensor<B, 2>>,
        inv_gain: Param<Tensor<B, 2>>,
        post: Option<PostFilter<B>>,
        precision: Precision,
    }

    /// A slice as it was before model 2: no `global`.
    #[derive(Module, Debug)]
    struct OldSlice<B: Backend> {
        channel: Option<ChannelCtx<B>>,
        spatial: Conv2d<B>,
        aggregate: Aggregate<B>,
    }

    impl<B: Backend, L> OldModel<B, L> {
        /// `model` in this layout, each slice made by `slice`.
        fn from_model(model: Model<B>, slice: impl Fn(Slice<B>) -> L) -> Self {
            Self {
                g_a: model.g_a,
                g_s: model.g_s,
                h_a: model.h_a,
                h_s: model.h_s,
                bottleneck: model.bottleneck,
                slices: model.slices.into_iter().map(slice).collect(),
                gain: model.gain,
                inv_gain: model.inv_gain,
                post: model.post,
                precision: model.precision,
            }
        }

        /// The current model with these parameters, each slice made by `slice`.
        fn into_model(self, slice: impl Fn(L) -> Slice<B>) -> Model<B> {
            Model {
                g_a: self.g_a,
                g_s: self.g_s,
                h_a: self.h_a,
                h_s: self.h_s,
                bottleneck: self.bottleneck,
                slices: self.slices.into_iter().map(slice).collect(),
                gain: self.gain,
                inv_gain: self.inv_gain,
                post: self.post,
                lrp: None,
                precision: self.precision,
            }
        }
    }

    fn old_slice<B: Backend>(s: Slice<B>) -> OldSlice<B> {
        OldSlice {
            channel: s.channel,
            spatial: s.spatial,
            aggregate: s.aggregate,
        }
    }

    fn new_slice<B: Backend>(s: OldSlice<B>) -> Slice<B> {
        Slice {
            channel: s.channel,
            spatial: s.spatial,
            aggregate: s.aggregate,
            global: None,
        }
    }

    pub fn load<B: Backend>(file: PathBuf, device: &B::Device) -> Result<Model<B>, String> {
        let template = || Model::<B>::new(device).with_post_filter(Shape::DEFAULT);
        let model2 = OldModel::from_model(template().with_global_refs(), |s| s);
        match model2.load_file(file.clone(), &recorder(), device) {
            Ok(loaded) => Ok(loaded.into_model(|s| s)),
            Err(_) => OldModel::from_model(template(), old_slice)
                .load_file(file, &recorder(), device)
                .map(|loaded| loaded.into_model(new_slice))
                .map_err(|e| e.to_string()),
        }
    }

    /// Saves `model` as a checkpoint written before the residual predictor (`model2`) or
    /// before model 2, for the test that they still load.
    #[cfg(test)]
    pub fn save<B: Backend>(model: Model<B>, model2: bool, file: PathBuf) {
        if model2 {
            OldModel::from_model(model, |s| s)
                .save_file(file, &recorder())
                .unwrap();
        } else {
            OldModel::from_model(model, old_slice)
                .save_file(file, &recorder())
                .unwrap();
        }
    }
}

pub fn load_optim<B: AutodiffBackend, O: Optimizer<Model<B>, B>>(
    ckpt: &Path,
    optim: O,
    device: &B::Device,
) -> Result<O, String> {
    let record = if ckpt.join("optim.bin").exists() {
        legacy::recorder()
            .load(ckpt.join("optim"), device)
            .map_err(|e| e.to_string())
    } else {
        read_record::<B, _>(ckpt, "optim", device)
    };
    let record = record.map_err(|e| {
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

    /// Checkpoints of every layout load as the model they hold: the binary records written
    /// before model 2 (slices without `global`) and before the residual predictor (model 2
    /// without `lrp`), and the named records written now, with and without the optional parts.
    #[test]
    fn checkpoints_of_every_layout_load() {
        use codec::model::post_filter::Shape;
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, model: Model<NdArray>, save: &dyn Fn(Model<NdArray>, PathBuf)| {
            let want = ModelFile::from_model(&model);
            let at = dir.path().join(name);
            std::fs::create_dir_all(&at).unwrap();
            save(model, at.join("model"));
            let loaded = load_model::<NdArray>(&at, &dev).unwrap();
            let got = ModelFile::from_model(&loaded);
            assert_eq!(
                (got.model, got.has_lrp()),
                (want.model, want.has_lrp()),
                "{name}"
            );
            assert_eq!(got.hash, want.hash, "{name}");
        };
        let model1 = || Model::<NdArray>::new(&dev).with_post_filter(Shape::DEFAULT);
        check("bin-model1", model1(), &|m, f| legacy::save(m, false, f));
        check("bin-model2", model1().with_global_refs(), &|m, f| {
            legacy::save(m, true, f)
        });
        let named = |m: Model<NdArray>, f: PathBuf| {
            write_record::<NdArray, _>(m.into_record(), f.parent().unwrap(), "model").unwrap()
        };
        check("model1", Model::new(&dev), &named);
        check("model2", model1().with_global_refs(), &named);
        check("model2-lrp", model1().with_global_refs().with_lrp(), &named);
    }
}
