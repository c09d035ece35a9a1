//! Latents of training crops, computed once by the frozen analysis transform, for training the
//! entropy model alone (`ember-train run --entropy-only`).
//!
//! Why: in a full step nearly all the compute goes to the analysis and synthesis transforms,
//! which run at full resolution, while the entropy model (hyper-analysis and -synthesis,
//! factorized prior, slice contexts) runs on the 16× smaller latent grid. With the transforms
//! frozen, a crop's latent never changes, so it is computed once and kept in memory, and each
//! step trains only the entropy model, for rate, on a batch of cached latents: the same CPU
//! then sees far more latents per hour than a full step gives it crops.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use codec::model::Model;
use codec::model::arch::{M, Y_STRIDE};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::Dataset;
use crate::rng::Rng;

/// Ungained latents `y` of random crops, `[count, M, side, side]` on the host.
pub struct LatentCache {
    values: Vec<f32>,
    /// Side of one latent in latent samples (the crop's side / 16).
    side: usize,
}

/// Which crops a cache holds: `count` random crops of `crop`² pixels from `data`, drawn with
/// `rng` (and flipped) as the training crops are, analysed `batch` at a time.
pub struct Crops<'a> {
    pub data: &'a Arc<Dataset>,
    pub rng: Rng,
    pub count: usize,
    pub batch: usize,
    pub crop: u32,
}

impl LatentCache {
    /// Runs `model`'s analysis transform over `crops`.
    pub fn build<B: Backend>(
        model: &Model<B>,
        crops: Crops<'_>,
        device: &B::Device,
    ) -> Result<Self, String> {
        let Crops {
            data,
            mut rng,
            count,
            batch,
            crop,
        } = crops;
        let side = crop as usize / Y_STRIDE;
        let per = M * side * side;
        let mut values = Vec::with_capacity(count * per);
        let bar = ProgressBar::new(count as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} caching latents [{bar:30}] {pos}/{len}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        while values.len() < count * per {
            let n = batch.min(count - values.len() / per);
            let x = Tensor::<B, 4>::from_data(
                TensorData::new(
                    data.batch(&mut rng, n, crop),
                    [n, 3, crop as usize, crop as usize],
                ),
                device,
            );
            let y = model.analysis_ungained(x).into_data();
            values.extend(
                y.convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| format!("latents: {e:?}"))?,
            );
            bar.inc(n as u64);
        }
        bar.finish_and_clear();
        Ok(Self { values, side })
    }

    /// The cache stored at `path` if it holds as many latents of crops of the same size from
    /// `model`'s analysis transform (by [`analysis_fingerprint`]); otherwise the latents
    /// of `crops` [built](Self::build) and stored there
    /// (atomically), so a resumed run does not redo the analysis: on a 2-core CPU that takes
    /// about 0.4 s per 512² crop, which is most of an hour for a few thousand crops.
    pub fn open<B: Backend>(
        path: &Path,
        model: &Model<B>,
        crops: Crops<'_>,
        device: &B::Device,
    ) -> Result<Self, String> {
        let hash = analysis_fingerprint(model);
        let (count, crop) = (crops.count, crops.crop);
        let side = crop as usize / Y_STRIDE;
        match Self::load(path, hash, count, side) {
            Ok(Some(cache)) => {
                eprintln!("latents from {}", path.display());
                return Ok(cache);
            }
            Ok(None) => {}
            Err(e) => eprintln!(
                "warning: {}: {e}; computing the latents again",
                path.display()
            ),
        }
        eprintln!("caching the latents of {count} crops of {crop}² ...");
        let cache = Self::build(model, crops, device)?;
        codec::fsutil::write_atomic_with(path, |f| {
            let mut w = std::io::BufWriter::new(f);
            w.write_all(&header(hash, count, side))?;
            for v in &cache.values {
                w.write_all(&v.to_le_bytes())?;
            }
            w.flush()
        })
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(cache)
    }

    /// The stored cache, `None` if there is none, or an error if it is unreadable or was made
    /// for other weights, another count or another crop size.
    fn load(path: &Path, hash: u64, count: usize, side: usize) -> Result<Option<Self>, String> {
        let expected = header(hash, count, side);
        let len = expected.len() as u64 + (count * M * side * side * 4) as u64;
        let bytes = match codec::fsutil::read_bounded(path, len) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if bytes.len() as u64 != len || bytes[..expected.len()] != expected {
            return Err("made for other weights or settings, or truncated".into());
        }
        let values = bytes[expected.len()..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Some(Self { values, side }))
    }

    /// `n` cached latents picked at random, `[n, M, side, side]`.
    pub fn batch<B: Backend>(&self, rng: &mut Rng, n: usize, device: &B::Device) -> Tensor<B, 4> {
        let per = M * self.side * self.side;
        let count = self.values.len() / per;
        let mut out = Vec::with_capacity(n * per);
        for _ in 0..n {
            let i = rng.below(count as u64) as usize;
            out.extend_from_slice(&self.values[i * per..(i + 1) * per]);
        }
        Tensor::from_data(TensorData::new(out, [n, M, self.side, self.side]), device)
    }

    /// Pixels of the crop one latent came from, to turn bits into bits per pixel.
    pub fn pixels(&self) -> usize {
        (self.side * Y_STRIDE).pow(2)
    }
}

/// Largest cache `--latent-crops` may ask for; it lives in memory, beside the training images.
const MAX_BYTES: u64 = 16 << 30;

/// Refuses an empty cache, or one too large to hold in memory, before anything is allocated.
pub fn check_size(count: usize, crop: u32) -> Result<(), String> {
    let side = u64::from(crop) / Y_STRIDE as u64;
    let bytes = (count as u64).saturating_mul(M as u64 * side * side * 4);
    if count == 0 || bytes > MAX_BYTES {
        return Err(format!(
            "--latent-crops must be positive and its latents at most {} GiB (asked: {:.1} GiB)",
            MAX_BYTES >> 30,
            bytes as f64 / f64::from(1u32 << 30)
        ));
    }
    Ok(())
}

/// What a stored cache starts with: a tag, the weights' hash, the count and the latent side.
fn header(hash: u64, count: usize, side: usize) -> Vec<u8> {
    let mut h = b"EMBERLAT".to_vec();
    h.extend_from_slice(&hash.to_le_bytes());
    h.extend_from_slice(&(count as u64).to_le_bytes());
    h.extend_from_slice(&(side as u64).to_le_bytes());
    h
}

/// The model file's [`fingerprint`](codec::weights::fingerprint) taken over the names and
/// values of the analysis transform's tensors alone: what a stored cache depends on (an
/// entropy-only run changes the rest of the model, so the whole file's hash would not do).
fn analysis_fingerprint<B: Backend>(model: &Model<B>) -> u64 {
    let file = codec::weights::ModelFile::from_model(model);
    let mut bytes = Vec::new();
    for (name, t) in file.tensors.iter().filter(|(n, _)| n.starts_with("g_a.")) {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
    }
    codec::weights::fingerprint(&bytes)
}
