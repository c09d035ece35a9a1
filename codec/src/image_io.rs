//! Reading source images and writing reconstructions.
//!
//! Any PNG, JPEG or PPM/PGM that the `image` crate decodes, 8 or 16 bits per sample. The codec
//! works on RGB: grayscale is replicated to three channels on input and averaged back on output
//! (the header remembers it was gray). An alpha channel is kept exactly, beside the lossy
//! colour ([`crate::alpha`]), unless it is opaque everywhere, in which case the decoded PNG has
//! none; the colour under fully transparent pixels is not kept (the encoder fills it). The sample depth (8 or 16 bits) is recorded and restored on output, alpha's included.
//!
//! Two pieces of metadata change what the pixels mean, and both are honoured: an EXIF
//! orientation is applied on reading (the coded picture is upright, as viewers show the
//! source, and the decoded PNG needs no tag), and an ICC colour profile other than sRGB is
//! kept, carried in the stream and written into the decoded PNG (see [`crate::icc`]). Other
//! metadata (EXIF, XMP, text) is not carried.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Limits};

use crate::bitstream::{MAX_PIXELS, MAX_SIDE};

/// File extensions read as images; everything else (READMEs, checksums) is ignored.
pub const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "ppm", "pgm", "pnm"];

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
    /// The source's ICC profile, unless it had none or an sRGB one (which says the same).
    pub profile: Option<Vec<u8>>,
    /// The source's alpha samples at `bit_depth`, row-major, unless it had no alpha channel or
    /// an opaque one (which says the same). Coded losslessly, not through the model.
    pub alpha: Option<Vec<u16>>,
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
        let bytes =
            std::fs::read(path).map_err(|e| ImageError::Read(name.clone(), e.to_string()))?;
        Self::decode(&name, &bytes)
    }

    /// Decodes an image file's bytes (PNG, JPEG or PNM, told apart by their content), checking
    /// its size from the header before decoding pixels; `name` names it in errors.
    pub fn decode(name: &str, bytes: &[u8]) -> Result<Self, ImageError> {
        let err = |e: &dyn std::fmt::Display| ImageError::Read(name.to_string(), e.to_string());
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
                path: name.to_string(),
                width,
                height,
            });
        }
        let mut reader = open()?;
        reader.limits(limits());
        let mut decoder = reader.into_decoder().map_err(|e| err(&e))?;
        // Metadata that cannot be read is treated as absent: the pixels are what matter.
        let profile = decoder
            .icc_profile()
            .ok()
            .flatten()
            .filter(|p| crate::icc::check(p).is_ok() && !crate::icc::is_srgb(p));
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).map_err(|e| err(&e))?;
        img.apply_orientation(orientation);
        Ok(Self {
            profile,
            ..Self::from_dynamic(&img)
        })
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
        let rgba16 = img.to_rgba16();
        let (w, h) = rgba16.dimensions();
        let n = (w * h) as usize;
        let mut rgb = vec![0.0f32; 3 * n];
        for (i, p) in rgba16.pixels().enumerate() {
            for c in 0..3 {
                rgb[c * n + i] = f32::from(p[c]) / 65535.0;
            }
        }
        // At 8 bits, to_rgba16 scales each sample by 257, which the shift undoes exactly.
        let alpha = (color.has_alpha() && rgba16.pixels().any(|p| p[3] != u16::MAX)).then(|| {
            let shift = 16 - u32::from(bit_depth);
            rgba16.pixels().map(|p| p[3] >> shift).collect()
        });
        Self {
            width: w,
            height: h,
            channels: if gray { 1 } else { 3 },
            bit_depth,
            rgb,
            profile: None,
            alpha,
        }
    }

    /// Samples quantized to the recorded depth, interleaved, gray averaged from RGB, alpha
    /// last when there is one.
    fn samples(&self) -> Vec<u16> {
        let n = (self.width * self.height) as usize;
        let max = if self.bit_depth == 16 { 65535.0 } else { 255.0 };
        let q = |v: f32| (v.clamp(0.0, 1.0) * max).round() as u16;
        let per_pixel = usize::from(self.channels) + usize::from(self.alpha.is_some());
        let mut out = Vec::with_capacity(n * per_pixel);
        for i in 0..n {
            if self.channels == 1 {
                out.push(q(
                    (self.rgb[i] + self.rgb[n + i] + self.rgb[2 * n + i]) / 3.0
                ));
            } else {
                out.extend([q(self.rgb[i]), q(self.rgb[n + i]), q(self.rgb[2 * n + i])]);
            }
            if let Some(a) = &self.alpha {
                out.push(a[i]);
            }
        }
        out
    }

    /// The image as the PNG/`image` value that `save_png` writes.
    pub fn to_dynamic(&self) -> DynamicImage {
        use DynamicImage::*;
        let (w, h) = (self.width, self.height);
        let wide = self.samples();
        let deep = self.bit_depth == 16;
        let narrow = || wide.iter().map(|&v| v as u8).collect::<Vec<u8>>();
        fn buffer<P: image::Pixel>(
            (w, h): (u32, u32),
            s: Vec<P::Subpixel>,
        ) -> image::ImageBuffer<P, Vec<P::Subpixel>> {
            image::ImageBuffer::from_raw(w, h, s).expect("size matches")
        }
        let size = (w, h);
        match (self.channels, self.alpha.is_some()) {
            (1, false) if deep => ImageLuma16(buffer(size, wide)),
            (1, false) => ImageLuma8(buffer(size, narrow())),
            (1, true) if deep => ImageLumaA16(buffer(size, wide)),
            (1, true) => ImageLumaA8(buffer(size, narrow())),
            (_, false) if deep => ImageRgb16(buffer(size, wide)),
            (_, false) => ImageRgb8(buffer(size, narrow())),
            (_, true) if deep => ImageRgba16(buffer(size, wide)),
            (_, true) => ImageRgba8(buffer(size, narrow())),
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
            profile: None,
            alpha: None,
        }
    }

    /// The image exactly as [`save_png`](Self::save_png) stores it (gray averaged, samples
    /// quantized to the bit depth), read back.
    pub fn as_stored(&self) -> Planar {
        Planar {
            profile: self.profile.clone(),
            ..Self::from_dynamic(&self.to_dynamic())
        }
    }

    /// The PNG file [`save_png`](Self::save_png) writes, colour profile included.
    pub fn png_bytes(&self) -> Result<Vec<u8>, image::ImageError> {
        let img = self.to_dynamic();
        let mut bytes = Vec::new();
        let mut png = PngEncoder::new(&mut bytes);
        if let Some(p) = &self.profile {
            png.set_icc_profile(p.clone())
                .expect("the PNG encoder takes ICC profiles");
        }
        png.write_image(img.as_bytes(), self.width, self.height, img.color().into())?;
        Ok(bytes)
    }

    /// Writes a PNG atomically.
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        let err = |e: &dyn std::fmt::Display| {
            ImageError::Write(path.display().to_string(), e.to_string())
        };
        let bytes = self.png_bytes().map_err(|e| err(&e))?;
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

    /// The inverse of [`padded`](Self::padded): the top-left `w × h` of three `pw × ph`
    /// planes, each value clamped to `[0, 1]` (a reconstruction's range).
    pub fn unpadded(planes: &[f32], (pw, ph): (usize, usize), (w, h): (usize, usize)) -> Vec<f32> {
        let mut rgb = Vec::with_capacity(3 * w * h);
        for c in 0..3 {
            for y in 0..h {
                let row = (c * ph + y) * pw;
                rgb.extend(planes[row..row + w].iter().map(|v| v.clamp(0.0, 1.0)));
            }
        }
        rgb
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icc::synthetic;

    fn load_png(dir: &Path, name: &str, png: &[u8]) -> Planar {
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        Planar::load(&path).unwrap()
    }

    #[test]
    fn unpadded_undoes_padded() {
        let img = Planar::pattern(13, 7, 3, 8, 0.6);
        let (planes, pw, ph) = img.padded(8);
        assert_eq!((pw, ph), (16, 8));
        assert_eq!(Planar::unpadded(&planes, (pw, ph), (13, 7)), img.rgb);
        // One pixel of three 2×2 planes, clamped.
        let planes = [-0.5, 9.0, 9.0, 9.0, 1.5, 9.0, 9.0, 9.0, 0.25, 9.0, 9.0, 9.0];
        assert_eq!(
            Planar::unpadded(&planes, (2, 2), (1, 1)),
            vec![0.0, 1.0, 0.25]
        );
    }

    #[test]
    fn a_profile_is_kept_unless_it_is_srgb() {
        let dir = tempfile::tempdir().unwrap();
        let p3 = Planar {
            profile: Some(synthetic::display_p3()),
            ..Planar::pattern(9, 7, 3, 16, 0.3)
        };
        let back = load_png(dir.path(), "p3.png", &p3.png_bytes().unwrap());
        assert_eq!(back, p3.as_stored());
        assert_eq!(back.profile, p3.profile);
        let srgb = Planar {
            profile: Some(synthetic::srgb()),
            ..p3.clone()
        };
        let back = load_png(dir.path(), "srgb.png", &srgb.png_bytes().unwrap());
        assert_eq!(back.profile, None);
        assert_eq!(back.rgb, p3.as_stored().rgb);
        // A chunk that is not an ICC profile is ignored, not an error.
        let junk = Planar {
            profile: Some(vec![7; 300]),
            ..p3.clone()
        };
        assert_eq!(
            load_png(dir.path(), "junk.png", &junk.png_bytes().unwrap()).profile,
            None
        );
    }

    /// EXIF orientation 6 (stored rotated: turn 90° clockwise to view) is applied on reading,
    /// so Ember codes the picture as viewers show it.
    #[test]
    fn exif_orientation_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        // A 3x2 gray picture whose pixels are all different.
        let stored = image::GrayImage::from_raw(3, 2, vec![10, 20, 30, 40, 50, 60]).unwrap();
        // A big-endian TIFF header and one IFD entry: tag 0x0112 (orientation), SHORT, 1, 6.
        let exif = [
            b"MM\0\x2a".as_slice(),
            &8u32.to_be_bytes(),
            &1u16.to_be_bytes(),
            &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
            &0u32.to_be_bytes(),
        ]
        .concat();
        let mut png = Vec::new();
        let mut enc = PngEncoder::new(&mut png);
        enc.set_exif_metadata(exif).unwrap();
        enc.write_image(stored.as_raw(), 3, 2, image::ExtendedColorType::L8)
            .unwrap();
        let upright = load_png(dir.path(), "rotated.png", &png);
        assert_eq!((upright.width, upright.height), (2, 3));
        let row = |y: usize| -> Vec<u8> {
            (0..2)
                .map(|x| (upright.rgb[y * 2 + x] * 255.0).round() as u8)
                .collect()
        };
        // Turned clockwise, the stored bottom-left pixel (40) is the viewed top-left.
        assert_eq!([row(0), row(1), row(2)], [[40, 10], [50, 20], [60, 30]]);
    }

    /// Alpha is read at the image's depth, written back into the PNG, and dropped when opaque.
    #[test]
    fn alpha_is_kept_unless_opaque() {
        let dir = tempfile::tempdir().unwrap();
        for (channels, depth) in [(3, 8), (3, 16), (1, 8), (1, 16)] {
            let max = if depth == 16 { 65535 } else { 255 };
            let base = Planar::pattern(7, 5, channels, depth, 0.1);
            let clear = Planar {
                alpha: Some((0..35).map(|i| (i * 977 % (max + 1)) as u16).collect()),
                ..base.clone()
            };
            let name = format!("a{channels}-{depth}.png");
            let back = load_png(dir.path(), &name, &clear.png_bytes().unwrap());
            assert_eq!(back, clear.as_stored(), "{name}");
            assert_eq!(back.alpha, clear.alpha, "{name}");
            assert!(back.to_dynamic().color().has_alpha(), "{name}");
            let opaque = Planar {
                alpha: Some(vec![max as u16; 35]),
                ..base.clone()
            };
            let back = load_png(dir.path(), &name, &opaque.png_bytes().unwrap());
            assert_eq!(back.alpha, None, "{name}");
            assert_eq!(back.rgb, base.as_stored().rgb, "{name}");
        }
    }
}
