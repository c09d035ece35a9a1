//! Helpers shared by the integration tests.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use codec::backend::{self, BackendKind, Job};
use codec::compress::{Codec, Latents};
use codec::image_io::Planar;
use codec::weights::ModelFile;
use codec::zoo::ModelId;
use std::path::{Path, PathBuf};

/// Says on the test run's output that the calling test skips its check, and why (a skipped
/// check must not pass silently).
pub use cli::skip_test as skip;

/// The backends built into this test binary that run without a GPU: tch (CPU) and ndarray,
/// and wgpu when built with `--features codec/wgpu` (on a machine without a GPU, Vulkan
/// through Mesa's lavapipe; `scripts/test-wgpu.sh`).
pub fn cpu_backends() -> Vec<BackendKind> {
    codec::backend::built()
        .into_iter()
        .filter(|k| {
            matches!(
                k,
                BackendKind::Tch | BackendKind::Ndarray | BackendKind::Wgpu
            )
        })
        .collect()
}

/// The conformance model (see `ModelFile::synthetic`).
pub fn synthetic() -> ModelFile {
    synthetic_of(ModelId::MrcV1)
}

/// Synthetic weights of each architecture, model 1 first.
pub fn synthetics() -> Vec<ModelFile> {
    ModelId::ALL.into_iter().map(synthetic_of).collect()
}

/// Synthetic weights (see `ModelFile::synthetic`) for the architecture `model`.
pub fn synthetic_of(model: ModelId) -> ModelFile {
    struct Make(ModelId);
    impl Job for Make {
        type Output = ModelFile;
        fn run<B: Backend>(self, device: B::Device) -> ModelFile {
            ModelFile::synthetic_of::<B>(self.0, 1, &device)
        }
    }
    backend::run(cpu_backends()[0], Make(model)).unwrap()
}

/// The test picture used throughout (and for the golden streams' sources).
pub fn picture(w: u32, h: u32, channels: u8, bit_depth: u8) -> Planar {
    Planar::pattern(w, h, channels, bit_depth, 0.0)
}

pub struct Encode(pub ModelFile, pub Planar, pub f32);

impl Job for Encode {
    type Output = (Vec<u8>, Latents);
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        Codec::<B>::new(self.0, device)
            .unwrap()
            .compress_with_latents(&self.1, self.2)
            .unwrap()
    }
}

pub struct Decode(pub ModelFile, pub Vec<u8>);

impl Job for Decode {
    type Output = Result<(Planar, Latents), String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        Codec::<B>::new(self.0, device)
            .unwrap()
            .decompress_with_latents(&self.1)
            .map_err(|e| e.to_string())
    }
}

/// CRC32 of a latent set, for compact golden records.
pub fn latents_crc(l: &Latents) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for v in l.z.iter().chain(l.y.iter().flatten()) {
        h.update(&v.to_le_bytes());
    }
    h.finalize()
}

/// The Kodak folder (`../shared/datasets/kodak` beside the repository) and the shipped model,
/// or `None` after saying why the calling test skips.
pub fn kodak_and_shipped_model() -> Option<(PathBuf, ModelFile)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kodak = root.join("../shared/datasets/kodak");
    if !kodak.is_dir() {
        skip(format!("Kodak not found at {}", kodak.display()));
        return None;
    }
    Some((kodak, shipped_model()))
}

/// The shipped model (`models/ember-mrc-v1.safetensors`, committed with the repository).
pub fn shipped_model() -> ModelFile {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ModelFile::load(&root.join("models/ember-mrc-v1.safetensors")).unwrap()
}
