//! How much of a model's distortion is quantization, and how much is its transforms?
//!
//! For each image and quality this prints the PSNR of `g_s(g_a(x))` with the latent left
//! continuous (the transform pair's own ceiling at that quality's gains) beside the PSNR with the
//! latent rounded around the entropy model's means (what the coder reconstructs). Where the two
//! are close, more bits cannot buy quality: the transforms are the limit.
//!
//! ```sh
//! cargo run --release -p codec --features codec/tch --example ceiling -- ../shared/datasets/kodak 1,4,8
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use codec::backend::{self, Job};
use codec::image_io::Planar;
use codec::weights::ModelFile;

struct Ceiling {
    file: ModelFile,
    images: Vec<(PathBuf, Planar)>,
    qualities: Vec<f32>,
}

fn psnr<B: Backend>(x_hat: Tensor<B, 4>, x: Tensor<B, 4>, (h, w): (usize, usize)) -> f32 {
    let crop = |t: Tensor<B, 4>| t.narrow(2, 0, h).narrow(3, 0, w);
    let mse: f32 = (crop(x_hat).clamp(0.0, 1.0) - crop(x))
        .powi_scalar(2)
        .mean()
        .into_scalar()
        .elem();
    -10.0 * mse.log10()
}

impl Job for Ceiling {
    type Output = Result<(), String>;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let model = self.file.to_burn::<B>(&device).map_err(|e| e.to_string())?;
        print!("| image |");
        for q in &self.qualities {
            print!(" q{q} continuous | q{q} rounded |");
        }
        println!();
        println!("|---|{}", "---:|---:|".repeat(self.qualities.len()));
        for (path, img) in &self.images {
            let (pixels, pw, ph) = img.padded(codec::model::arch::PAD_TO);
            let size = (img.height as usize, img.width as usize);
            let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [1, 3, ph, pw]), &device);
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            print!("| {name} |");
            for &q in &self.qualities {
                let y = model.analysis(x.clone(), q);
                let continuous = psnr(model.synthesis(y.clone(), q), x.clone(), size);
                let rounded = psnr(model.code(y, q, false).x_hat, x.clone(), size);
                print!(" {continuous:.2} | {rounded:.2} |");
            }
            println!();
        }
        Ok(())
    }
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: ceiling DIR [Q,Q,…] [MODEL]")?);
    let qualities = args
        .next()
        .unwrap_or_else(|| "1,4,8".into())
        .split(',')
        .map(|q| q.parse::<f32>().map_err(|e| format!("quality {q}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let model = args.next().map(PathBuf::from);
    let file =
        ModelFile::load(&codec::zoo::find_model(model.as_deref())?).map_err(|e| e.to_string())?;
    let images = codec::eval::load_images(Path::new(&dir))?;
    let kind = codec::backend::default_kind().ok_or("no CPU backend built")?;
    backend::run(
        kind,
        Ceiling {
            file,
            images,
            qualities,
        },
    )?
}
