//! Training data: every image under a folder, decoded once into memory, served as random crops.
//!
//! Images are downscaled on load so that their shorter side is at most `max_short` pixels
//! (default 512): most training photos are JPEGs whose downscaled versions have fewer coding
//! artefacts, and the cache then fits in a few GB. Images whose shorter side is below the crop
//! size are **upscaled** to it (never padded), so every crop is real image content. Crops are
//! taken at random positions and flipped horizontally with probability ½.
//!
//! The validation set (`train/validation.txt`, [`HELD_OUT`]) is never trained on: every image
//! whose path ends with one of its lines is left out of [`Dataset::load`] and [`pack`].

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

use image::RgbImage;
use image::imageops::FilterType;
use rayon::prelude::*;

use crate::rng::Rng;

/// The validation set: paths relative to the training-data folder, one per line, `#` comments.
/// Compiled in, so every build holds out the same photos whatever folder it runs from.
pub const HELD_OUT: &str = include_str!("../validation.txt");

/// The held-out validation photos, as paths relative to the training-data folder.
pub fn held_out() -> impl Iterator<Item = &'static Path> {
    HELD_OUT
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Path::new)
}

/// Whether `path` is a validation photo: it ends with one of [`held_out`]'s paths (whole
/// components, so a folder may be given at any depth above them).
pub fn is_held_out(path: &Path) -> bool {
    held_out().any(|h| path.ends_with(h))
}

/// Every image under `dir` except the validation photos, sorted.
pub fn training_images(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = codec::image_io::list_images(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    files.retain(|f| !is_held_out(f));
    Ok(files)
}

/// The validation photos found under the training-data folder `dir`, in the list's order.
pub fn validation_images(dir: &Path) -> Vec<PathBuf> {
    held_out()
        .map(|h| dir.join(h))
        .filter(|p| p.is_file())
        .collect()
}

pub struct Dataset {
    images: Vec<RgbImage>,
}

impl Dataset {
    /// Loads every training image under `dir` (all but the validation photos) in parallel.
    /// Unreadable files are skipped with a warning naming them; an empty result is an error.
    pub fn load(dir: &Path, crop: u32, max_short: u32) -> Result<Self, String> {
        let files = training_images(dir)?;
        let images: Vec<RgbImage> = files
            .par_iter()
            .filter_map(|f| match image::open(f) {
                Ok(img) => Some(fit(img.to_rgb8(), crop, max_short)),
                Err(e) => {
                    eprintln!("warning: skipping {}: {e}", f.display());
                    None
                }
            })
            .collect();
        if images.is_empty() {
            return Err(format!("no readable images under {}", dir.display()));
        }
        Ok(Self { images })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// A batch `[n, 3, crop, crop]` of values in `[0, 1]`, channel-planar.
    pub fn batch(&self, rng: &mut Rng, n: usize, crop: u32) -> Vec<f32> {
        let c = crop as usize;
        let picks: Vec<(usize, u32, u32, bool)> = (0..n)
            .map(|_| {
                let i = rng.below(self.images.len() as u64) as usize;
                let img = &self.images[i];
                let x = rng.below(u64::from(img.width() - crop + 1)) as u32;
                let y = rng.below(u64::from(img.height() - crop + 1)) as u32;
                (i, x, y, rng.below(2) == 1)
            })
            .collect();
        let mut out = vec![0.0f32; n * 3 * c * c];
        out.par_chunks_mut(3 * c * c)
            .zip(picks)
            .for_each(|(dst, (i, x0, y0, flip))| {
                let img = &self.images[i];
                for yy in 0..c {
                    for xx in 0..c {
                        let sx = if flip { c - 1 - xx } else { xx };
                        let p = img.get_pixel(x0 + sx as u32, y0 + yy as u32);
                        for ch in 0..3 {
                            dst[(ch * c + yy) * c + xx] = f32::from(p[ch]) / 255.0;
                        }
                    }
                }
            });
        out
    }
}

/// Writes every training image under `src` (all but the validation photos) into `out` as a JPEG
/// of quality `quality` whose shorter side is `short_side`: a compact copy of a training set for
/// machines it must travel to (the GPU machine takes 64 MiB per call). Returns the number of
/// images and their total bytes.
pub fn pack(src: &Path, out: &Path, short_side: u32, quality: u8) -> Result<(usize, u64), String> {
    let files = training_images(src)?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let sizes: Vec<u64> = files
        .par_iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let img = match image::open(f) {
                Ok(img) => fit(img.to_rgb8(), short_side, short_side),
                Err(e) => {
                    eprintln!("warning: skipping {}: {e}", f.display());
                    return None;
                }
            };
            let mut bytes = Vec::new();
            let encoded = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
                .encode_image(&img);
            let path = out.join(format!("{i:05}.jpg"));
            Some(
                encoded
                    .map_err(|e| format!("cannot encode {}: {e}", f.display()))
                    .and_then(|()| {
                        codec::fsutil::write_atomic(&path, &bytes)
                            .map_err(|e| format!("cannot write {}: {e}", path.display()))
                    })
                    .map(|()| bytes.len() as u64),
            )
        })
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        return Err(format!("no readable images under {}", src.display()));
    }
    Ok((sizes.len(), sizes.iter().sum()))
}

/// Scales so the shorter side is within `[crop, max_short]` (Lanczos down, Catmull-Rom up).
fn fit(img: RgbImage, crop: u32, max_short: u32) -> RgbImage {
    let short = img.width().min(img.height());
    let target = short.clamp(crop, max_short.max(crop));
    if target == short {
        return img;
    }
    let s = f64::from(target) / f64::from(short);
    let (w, h) = (
        ((f64::from(img.width()) * s).round() as u32).max(crop),
        ((f64::from(img.height()) * s).round() as u32).max(crop),
    );
    let filter = if target < short {
        FilterType::Lanczos3
    } else {
        FilterType::CatmullRom
    };
    image::imageops::resize(&img, w, h, filter)
}

/// Batches prepared on a background thread, `depth` ahead, so the model never waits on crops.
pub fn prefetch(
    data: std::sync::Arc<Dataset>,
    mut rng: Rng,
    n: usize,
    crop: u32,
    depth: usize,
) -> Receiver<Vec<f32>> {
    let (tx, rx) = sync_channel(depth);
    std::thread::spawn(
        move || {
            while tx.send(data.batch(&mut rng, n, crop)).is_ok() {}
        },
    );
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_set_is_fifty_distinct_photos() {
        let list: Vec<&Path> = held_out().collect();
        assert_eq!(list.len(), 50);
        let mut names: Vec<&Path> = list.clone();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 50, "a photo is listed twice");
        for p in list {
            assert!(
                p.is_relative() && p.components().count() == 2,
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn held_out_photos_are_left_out_of_training_and_found_for_validation() {
        let dir = std::env::temp_dir().join(format!("ember-holdout-{}", std::process::id()));
        let first = held_out().next().unwrap();
        let kept = Path::new("imagenet_samples/not_a_validation_photo.png");
        for p in [first, kept] {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::new(64, 64).save(&path).unwrap();
        }
        assert_eq!(training_images(&dir).unwrap(), vec![dir.join(kept)]);
        assert_eq!(validation_images(&dir), vec![dir.join(first)]);
        // Given one level down, the same photo is still held out.
        let sub = dir.join(first.parent().unwrap());
        assert_eq!(training_images(&sub).unwrap(), vec![dir.join(kept)]);
        assert_eq!(Dataset::load(&dir, 64, 512).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
