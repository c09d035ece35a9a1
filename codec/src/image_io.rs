//! Reading source images and writing reconstructions.
//!
//! Any PNG, JPEG or PPM/PGM that the `image` crate decodes, 8 or 16 bits per sample. The codec
//! works on RGB: grayscale is replicated to three channels on input and averaged back on output
//! (the header remembers it was gray). **Alpha is discarded**: Ember codes colour only, and the
//! decoded PNG is opaque. The sample depth (8 or 16 bits) is recorded and restored on output.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, Limits};

use crate::bitstream::{MAX_PIXELS, MAX_SIDE};

/// File extensions read as images; everything else (READMEs, checksums) is ignored.
const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "ppm", "pgm", "pnm"];

/// All image files under `dir`, recursively, in sorted order (so runs are reproducible).
pub fn list_images(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// An image ready for coding: planar RGB in `[0, 1]`, `[3, height, width]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    pub width: u32,
    pub height: u32,
    /// 1 if the source was grayscale (with or without alpha), else 3.
    pub channels: u8,
    /// 8 or 16.
    pub bit_depth: u8,
    pub rgb: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image {0}: {1}")]
    Read(String, String),
    #[error(
        "image {path} is {width}x{height}; Ember codes sides up to {MAX_SIDE} and at most {MAX_PIXELS} pixels"
    )]
    TooLarge {
        path: String,
        width: u32,
        height: u32,
    },
    #[error("cannot write {0}: {1}")]
    Write(String, String),
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    // 2^28 pixels of 16-bit RGBA.
    l.max_alloc = Some(MAX_PIXELS * 8);
    l
}

impl Planar {
    /// Reads an image file, checking its size from the header before decoding pixels.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let name = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| ImageError::Read(name.clone(), e.to_string());
        let bytes = std::fs::read(path).map_err(|e| err(&e))?;
        let open = || {
            ImageReader::new(Cursor::new(&bytes))
                .with_guessed_format()
                .map_err(|e| err(&e))
        };
        let (width, height) = open()?.into_dimensions().map_err(|e| err(&e))?;
        if u64::from(width) * u64::from(height) > MAX_PIXELS
            || width > MAX_SIDE
            || height > MAX_SIDE
        {
            return Err(ImageError::TooLarge {
                path: name,
                width,
                height,
            });
        }
        let mut reader = open()?;
        reader.limits(limits());
        let img = reader.decode().map_err(|e| err(&e))?;
        Ok(Self::from_dynamic(&img))
    }

    pub fn from_dynamic(img: &DynamicImage) -> Self {
        use image::ColorType::*;
        let color = img.color();
        let gray = matches!(color, L8 | La8 | L16 | La16);
        let bit_depth = if matches!(color, L16 | La16 | Rgb16 | Rgba16 | Rgb32F | Rgba32F) {
            16
        } else {
            8
        };
        let rgb16 = img.to_rgb16();
        let (w, h) = rgb16.dimensions();
        let n = (w * h) as usize;
        let mut rgb = vec![0.0f32; 3 * n];
        for (i, p) in rgb16.pixels().enumerate() {
            for c in 0..3 {
                rgb[c * n + i] = f32::from(p[c]) / 65535.0;
            }
        }
        Self {
            width: w,
            height: h,
            channels: if gray { 1 } else { 3 },
            bit_depth,
            rgb,
        }
    }

    /// Samples quantized to the recorded depth, interleaved, gray averaged from RGB.
    fn samples(&self) -> Vec<u16> {
        let n = (self.width * self.height) as usize;
        let max = if self.bit_depth == 16 { 65535.0 } else { 255.0 };
        let q = |v: f32| (v.clamp(0.0, 1.0) * max).round() as u16;
        if self.channels == 1 {
            (0..n)
                .map(|i| q((self.rgb[i] + self.rgb[n + i] + self.rgb[2 * n + i]) / 3.0))
                .collect()
        } else {
            (0..n)
                .flat_map(|i| [q(self.rgb[i]), q(self.rgb[n + i]), q(self.rgb[2 * n + i])])
                .collect()
        }
    }

    /// The image as the PNG/`image` value that `save_png` writes.
    pub fn to_dynamic(&self) -> DynamicImage {
        let (w, h) = (self.width, self.height);
        let s = self.samples();
        match (self.channels, self.bit_depth) {
            (1, 16) => DynamicImage::ImageLuma16(
                image::ImageBuffer::from_raw(w, h, s).expect("size matches"),
            ),
            (1, _) => DynamicImage::ImageLuma8(
                image::ImageBuffer::from_raw(w, h, s.iter().map(|&v| v as u8).collect())
                    .expect("size matches"),
            ),
            (_, 16) => DynamicImage::ImageRgb16(
                image::ImageBuffer::from_raw(w, h, s).expect("size matches"),
            ),
            _ => DynamicImage::ImageRgb8(
                image::ImageBuffer::from_raw(w, h, s.iter().map(|&v| v as u8).collect())
                    .expect("size matches"),
            ),
        }
    }

    /// A deterministic synthetic picture (smooth waves plus fine texture, shifted by `phase`),
    /// quantized to `bit_depth`; gray when `channels` is 1. For tests and benchmarks that must
    /// not depend on image files.
    pub fn pattern(w: u32, h: u32, channels: u8, bit_depth: u8, phase: f32) -> Planar {
        let n = (w * h) as usize;
        let levels = if bit_depth == 16 { 65535.0 } else { 255.0 };
        let mut rgb = vec![0.0; 3 * n];
        for c in 0..3 {
            let cc = if channels == 1 { 0.0 } else { c as f32 };
            for i in 0..n {
                let (x, y) = ((i % w as usize) as f32, (i / w as usize) as f32);
                let v = 0.5
                    + 0.3 * ((x * 0.11 + cc + phase).sin() * (y * 0.07).cos())
                    + 0.15 * ((x * 0.9 + y * 1.3).sin());
                rgb[c * n + i] = (v.clamp(0.0, 1.0) * levels).round() / levels;
            }
        }
        Planar {
            width: w,
            height: h,
            channels,
            bit_depth,
            rgb,
        }
    }

    /// The image exactly as [`save_png`](Self::save_png) stores it (gray averaged, samples
    /// quantized to the bit depth), read back.
    pub fn as_stored(&self) -> Planar {
        Self::from_dynamic(&self.to_dynamic())
    }

    /// Writes a PNG atomically.
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        let err = |e: &dyn std::fmt::Display| {
            ImageError::Write(path.display().to_string(), e.to_string())
        };
        let mut bytes = Vec::new();
        self.to_dynamic()
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| err(&e))?;
        crate::fsutil::write_atomic(path, &bytes).map_err(|e| err(&e))
    }

    /// Pads right and bottom to multiples of `multiple` by replicating the last column/row.
    pub fn padded(&self, multiple: usize) -> (Vec<f32>, usize, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (pw, ph) = (
            w.div_ceil(multiple) * multiple,
            h.div_ceil(multiple) * multiple,
        );
        let mut out = vec![0.0; 3 * pw * ph];
        for c in 0..3 {
            for y in 0..ph {
                let sy = y.min(h - 1);
                for x in 0..pw {
                    out[(c * ph + y) * pw + x] = self.rgb[(c * h + sy) * w + x.min(w - 1)];
                }
            }
        }
        (out, pw, ph)
    }
}
