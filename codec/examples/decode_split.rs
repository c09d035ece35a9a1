//! Where a decode's time goes: entropy decoding, the synthesis transform and the post-filter,
//! each timed alone on the whole image (best of 6), beside the whole `decompress`.
//!
//! ```sh
//! cargo run --release -p codec --features codec/tch --example decode_split -- IMAGE [QUALITY] [MODEL]
//! ```
//!
//! `decompress` runs the synthesis on tiles ([`codec::compress::TILE`]) and copies the pixels
//! out, so it need not equal the sum of its parts.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use codec::backend::{self, Job};
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::weights::ModelFile;

const RUNS: usize = 6;

struct Split {
    file: ModelFile,
    image: Planar,
    quality: f32,
}

/// The shortest of [`RUNS`] runs of `f`, in seconds.
fn best(mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// A coding call's result with its value dropped and its error as text.
fn done<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<(), String> {
    result.map(drop).map_err(|e| e.to_string())
}

impl Job for Split {
    type Output = Result<(), String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let q = self.quality;
        let codec = Codec::<B>::new(self.file, device.clone()).map_err(|e| e.to_string())?;
        let bytes = codec.compress(&self.image, q).map_err(|e| e.to_string())?;
        let decoded = codec.decode_latents(&bytes).map_err(|e| e.to_string())?;
        let y = &decoded.y_hat;
        let y_hat =
            Tensor::<B, 4>::from_data(TensorData::new(y.data.clone(), [1, y.c, y.h, y.w]), &device);
        let x_hat = codec.model.synthesis_transform(y_hat.clone(), q);
        let whole = best(|| done(codec.decompress(&bytes)))?;
        let entropy = best(|| done(codec.decode_latents(&bytes)))?;
        let synthesis = best(|| {
            drop(
                codec
                    .model
                    .synthesis_transform(y_hat.clone(), q)
                    .into_data(),
            );
            Ok(())
        })?;
        let filter = match &codec.model.post {
            Some(post) => best(|| {
                drop(post.forward(x_hat.clone(), q).into_data());
                Ok(())
            })?,
            None => 0.0,
        };
        println!(
            "{}x{} at quality {q}, best of {RUNS}: decompress {whole:.3} s; alone: entropy \
             decoding {entropy:.3} s, synthesis transform {synthesis:.3} s, post-filter {filter:.3} s",
            self.image.width, self.image.height
        );
        Ok(())
    }
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let image = PathBuf::from(
        args.next()
            .ok_or("usage: decode_split IMAGE [QUALITY] [MODEL]")?,
    );
    let quality = match args.next() {
        Some(q) => q.parse::<f32>().map_err(|e| format!("quality {q}: {e}"))?,
        None => 4.0,
    };
    let model = args.next().map(PathBuf::from);
    let file =
        ModelFile::load(&codec::zoo::find_model(model.as_deref())?).map_err(|e| e.to_string())?;
    let image = Planar::load(&image).map_err(|e| e.to_string())?;
    let kind = codec::backend::default_kind().ok_or("no CPU backend built")?;
    backend::run(
        kind,
        Split {
            file,
            image,
            quality,
        },
    )?
}
