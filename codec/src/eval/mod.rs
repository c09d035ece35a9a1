//! Rate-distortion evaluation of a folder of images, reported the way papers do (CompressAI's
//! conventions): bpp from the real file size, header included; PSNR and MS-SSIM on 8-bit RGB per
//! image, then averaged over images; mean encode/decode seconds.
//!
//! The same loop measures Ember and the classical codecs ([`classical`]), so every curve in a
//! comparison is computed by one piece of code. [`curves`] reads results files (ours and the
//! published anchors), [`bdrate`] compares curves and [`plot`] draws them (all three in the
//! `cli` crate, which runs them without a model).

pub mod classical;

pub use cli::{bdrate, curves, plot};

use std::io::IsTerminal;
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
    /// The codec's own quality knob (Ember's 1–8, JPEG's quality, HEVC's QP, …).
    pub quality: f32,
    pub bytes: usize,
    pub bpp: f64,
    /// Ember's rate estimate from its likelihoods, header excluded, in bpp.
    pub estimated_bpp: Option<f64>,
    pub psnr: f64,
    /// `None` for images too small for five scales (shorter side ≤ 160).
    pub ms_ssim: Option<f64>,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// What a codec under test returns for one image at one quality.
pub struct Coded {
    pub bytes: usize,
    pub decoded: Planar,
    /// Estimated bits, where the codec has an estimate.
    pub estimated_bits: Option<f64>,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// Reads every image of `dir`. Unreadable files are skipped with a warning naming them; a folder
/// without images is an error. Colour profiles and alpha are dropped: rate–distortion is
/// measured on the colour pixels, and every codec gets them without anything else (the
/// classical tools read a PPM), so a profile's or an alpha plane's bytes must not count against
/// Ember's streams alone.
pub fn load_images(dir: &Path) -> Result<Vec<(PathBuf, Planar)>, String> {
    let files =
        image_io::list_images(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut images = Vec::new();
    for f in files {
        match Planar::load(&f) {
            Ok(img) => images.push((
                f,
                Planar {
                    profile: None,
                    alpha: None,
                    ..img
                },
            )),
            Err(e) => eprintln!("warning: skipping {e}"),
        }
    }
    if images.is_empty() {
        return Err(format!("no readable images in {}", dir.display()));
    }
    Ok(images)
}

/// Codes every image at every quality with `code` and measures each result against the image
/// as stored (quantized to its bit depth).
pub fn evaluate_with(
    images: &[(PathBuf, Planar)],
    qualities: &[f32],
    mut code: impl FnMut(&Planar, f32) -> Result<Coded, String>,
) -> Result<Vec<Row>, String> {
    let bar = ProgressBar::new((images.len() * qualities.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // indicatif draws nothing where stderr is not a terminal (a run in the background with
    // its output in a file), so there each result gets a line of its own instead: with
    // refinement an evaluation runs for hours, and it must show that it is moving.
    let lines = !std::io::stderr().is_terminal();
    let total = images.len() * qualities.len();
    let mut rows = Vec::new();
    for &q in qualities {
        for (path, img) in images {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            bar.set_message(format!("q{q} {name}"));
            let coded = code(img, q).map_err(|e| format!("{}: {e}", path.display()))?;
            let pixels = f64::from(img.width) * f64::from(img.height);
            let (src, rec) = (img.as_stored(), coded.decoded.as_stored());
            if (rec.width, rec.height) != (src.width, src.height) {
                return Err(format!(
                    "{}: decoded {}x{}, expected {}x{}",
                    path.display(),
                    rec.width,
                    rec.height,
                    src.width,
                    src.height
                ));
            }
            let row = Row {
                image: name,
                quality: q,
                bytes: coded.bytes,
                bpp: 8.0 * coded.bytes as f64 / pixels,
                estimated_bpp: coded.estimated_bits.map(|b| b / pixels),
                psnr: psnr_rgb8(&src, &rec),
                ms_ssim: ms_ssim_rgb8(&src, &rec),
                encode_s: coded.encode_s,
                decode_s: coded.decode_s,
            };
            if lines {
                eprintln!(
                    "{}/{total} {} at {}: {:.4} bpp, {:.2} dB (encode {:.1} s, decode {:.1} s)",
                    rows.len() + 1,
                    row.image,
                    row.quality,
                    row.bpp,
                    row.psnr,
                    row.encode_s,
                    row.decode_s
                );
            }
            rows.push(row);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Evaluates Ember: real bitstreams through [`Codec::compress_refined`] (with `refine` steps of
/// latent refinement, 0 for none) and [`Codec::decompress`], plus the model's own rate estimate
/// where there is no refinement (it is of the unrefined latents).
pub fn evaluate<B: Backend>(
    codec: &Codec<B>,
    images: &[(PathBuf, Planar)],
    qualities: &[f32],
    refine: usize,
) -> Result<Vec<Row>, String> {
    evaluate_with(images, qualities, |img, q| {
        let t = std::time::Instant::now();
        let (bytes, _, _) = codec
            .compress_refined(img, q, refine)
            .map_err(|e| e.to_string())?;
        let encode_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let decoded = codec.decompress(&bytes).map_err(|e| e.to_string())?;
        let decode_s = t.elapsed().as_secs_f64();
        let estimated_bits = match refine {
            0 => Some(codec.estimate_bits(img, q).map_err(|e| e.to_string())?),
            _ => None,
        };
        Ok(Coded {
            bytes: bytes.len(),
            decoded,
            estimated_bits,
            encode_s,
            decode_s,
        })
    })
}

/// CompressAI's results JSON: one point per quality, each the mean over images. `extra` fields
/// are added beside `name` and `description`.
pub fn compressai_json(
    name: &str,
    description: &str,
    rows: &[Row],
    extra: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
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
    let mut results = serde_json::json!({
        "quality": qualities,
        "bpp": series(&|r| Some(r.bpp)),
        "psnr-rgb": series(&|r| Some(r.psnr)),
        "ms-ssim-rgb": series(&|r| r.ms_ssim),
        "encoding_time": series(&|r| Some(r.encode_s)),
        "decoding_time": series(&|r| Some(r.decode_s)),
    });
    if rows.iter().all(|r| r.estimated_bpp.is_some()) {
        results["estimated_bpp"] = serde_json::json!(series(&|r| r.estimated_bpp));
    }
    let mut out = serde_json::Map::new();
    out.insert("name".into(), name.into());
    out.insert("description".into(), description.into());
    out.extend(extra);
    out.insert("results".into(), results);
    serde_json::Value::Object(out)
}

/// Per-image CSV with a header line.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "image,quality,bytes,bpp,estimated_bpp,psnr_rgb,ms_ssim_rgb,encode_s,decode_s\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{:.6},{},{:.4},{},{:.4},{:.4}\n",
            r.image,
            r.quality,
            r.bytes,
            r.bpp,
            opt(r.estimated_bpp),
            r.psnr,
            opt(r.ms_ssim),
            r.encode_s,
            r.decode_s
        ));
    }
    out
}

/// A Markdown table of a results JSON written by [`compressai_json`].
pub fn markdown_table(json: &serde_json::Value) -> String {
    let r = &json["results"];
    let has_estimate = r.get("estimated_bpp").is_some();
    let mut out = String::from("| quality | bpp |");
    if has_estimate {
        out.push_str(" estimated bpp |");
    }
    out.push_str(" PSNR-RGB dB | MS-SSIM | encode s | decode s |\n|---|---:|");
    if has_estimate {
        out.push_str("---:|");
    }
    out.push_str("---:|---:|---:|---:|\n");
    let n = r["bpp"].as_array().map_or(0, Vec::len);
    for i in 0..n {
        let f = |k: &str, p: usize| {
            r[k][i]
                .as_f64()
                .map(|v| format!("{v:.p$}"))
                .unwrap_or_else(|| "-".into())
        };
        let q = r["quality"][i]
            .as_f64()
            .map_or_else(|| "-".into(), |q| q.to_string());
        out.push_str(&format!("| {q} | {} |", f("bpp", 4)));
        if has_estimate {
            out.push_str(&format!(" {} |", f("estimated_bpp", 4)));
        }
        out.push_str(&format!(
            " {} | {} | {} | {} |\n",
            f("psnr-rgb", 2),
            f("ms-ssim-rgb", 4),
            f("encoding_time", 3),
            f("decoding_time", 3)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(q: f32, bpp: f64, psnr: f64, ms: Option<f64>) -> Row {
        Row {
            image: format!("{bpp}.png"),
            quality: q,
            bytes: 1,
            bpp,
            estimated_bpp: None,
            psnr,
            ms_ssim: ms,
            encode_s: 0.5,
            decode_s: 0.25,
        }
    }

    #[test]
    fn json_averages_per_quality_and_keeps_missing_ms_ssim_as_null() {
        let rows = [
            row(1.0, 0.2, 30.0, Some(0.9)),
            row(1.0, 0.4, 32.0, None),
            row(2.0, 1.0, 40.0, Some(0.99)),
        ];
        let mut extra = serde_json::Map::new();
        extra.insert("floor".into(), 50.0.into());
        let j = compressai_json("x", "d", &rows, extra);
        let r = &j["results"];
        assert_eq!(j["floor"], 50.0);
        assert!((r["bpp"][0].as_f64().unwrap() - 0.3).abs() < 1e-12);
        assert_eq!(r["psnr-rgb"][1], 40.0);
        assert!(r["ms-ssim-rgb"][0].is_null());
        assert!(r.get("estimated_bpp").is_none());
        let table = markdown_table(&j);
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.contains("| 2 | 1.0000 | 40.00 | 0.9900 |"), "{table}");
    }
}
