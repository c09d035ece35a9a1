//! Rate-distortion evaluation of a folder of images, reported the way papers do (CompressAI's
//! conventions): bpp from the real file size, header included; PSNR and MS-SSIM on 8-bit RGB per
//! image, then averaged over images; mean encode/decode seconds.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::compress::Codec;
use crate::image_io::{self, Planar};
use crate::metrics::{ms_ssim_rgb8, psnr_rgb8};

/// One image coded at one quality.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub image: String,
    pub quality: f32,
    pub bytes: usize,
    pub bpp: f64,
    /// The model's rate estimate from its likelihoods, header excluded, in bpp.
    pub estimated_bpp: f64,
    pub psnr: f64,
    /// `None` for images too small for five scales (shorter side ≤ 160).
    pub ms_ssim: Option<f64>,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// Codes every readable image of `dir` at every quality. Unreadable files are skipped with a
/// warning naming them; a folder without images is an error.
pub fn evaluate<B: Backend>(
    codec: &Codec<B>,
    dir: &Path,
    qualities: &[f32],
) -> Result<Vec<Row>, String> {
    let files =
        image_io::list_images(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut images: Vec<(PathBuf, Planar)> = Vec::new();
    for f in files {
        match Planar::load(&f) {
            Ok(img) => images.push((f, img)),
            Err(e) => eprintln!("warning: skipping {e}"),
        }
    }
    if images.is_empty() {
        return Err(format!("no readable images in {}", dir.display()));
    }
    let bar = ProgressBar::new((images.len() * qualities.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut rows = Vec::new();
    for &q in qualities {
        for (path, img) in &images {
            bar.set_message(format!(
                "q{q} {}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ));
            let t = std::time::Instant::now();
            let bytes = codec
                .compress(img, q)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let encode_s = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let rec = codec
                .decompress(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let decode_s = t.elapsed().as_secs_f64();
            let estimate = codec
                .estimate_bits(img, q)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let (src, rec) = (img.as_stored(), rec.as_stored());
            rows.push(Row {
                image: path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                quality: q,
                bytes: bytes.len(),
                bpp: 8.0 * bytes.len() as f64 / (f64::from(img.width) * f64::from(img.height)),
                estimated_bpp: estimate / (f64::from(img.width) * f64::from(img.height)),
                psnr: psnr_rgb8(&src, &rec),
                ms_ssim: ms_ssim_rgb8(&src, &rec),
                encode_s,
                decode_s,
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// CompressAI's results JSON: one point per quality, each the mean over images.
pub fn compressai_json(name: &str, description: &str, rows: &[Row]) -> serde_json::Value {
    let mut qualities: Vec<f32> = rows.iter().map(|r| r.quality).collect();
    qualities.dedup();
    let mean = |q: f32, f: &dyn Fn(&Row) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r.quality == q)
            .map(f)
            .collect::<Option<_>>()?;
        Some(v.iter().sum::<f64>() / v.len() as f64)
    };
    let series = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<Option<f64>> {
        qualities.iter().map(|&q| mean(q, f)).collect()
    };
    serde_json::json!({
        "name": name,
        "description": description,
        "results": {
            "quality": qualities,
            "bpp": series(&|r| Some(r.bpp)),
            "estimated_bpp": series(&|r| Some(r.estimated_bpp)),
            "psnr-rgb": series(&|r| Some(r.psnr)),
            "ms-ssim-rgb": series(&|r| r.ms_ssim),
            "encoding_time": series(&|r| Some(r.encode_s)),
            "decoding_time": series(&|r| Some(r.decode_s)),
        }
    })
}

/// Per-image CSV with a header line.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "image,quality,bytes,bpp,estimated_bpp,psnr_rgb,ms_ssim_rgb,encode_s,decode_s\n",
    );
    for r in rows {
        let ms = r.ms_ssim.map(|v| format!("{v:.6}")).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{:.6},{:.6},{:.4},{},{:.4},{:.4}\n",
            r.image, r.quality, r.bytes, r.bpp, r.estimated_bpp, r.psnr, ms, r.encode_s, r.decode_s
        ));
    }
    out
}
