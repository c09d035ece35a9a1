//! Compressing an image to a bitstream and back.
//!
//! The transforms (`g_a`, `h_a`, `g_s`) run on any Burn backend in float; everything that
//! produces entropy parameters runs in [`crate::detnet`] on the CPU, so a stream encoded on one
//! backend or machine decodes bit-exactly on any other.
//!
//! Coding order (the bitstream spec's part order): ẑ under the factorized tables; then for
//! each slice `k`, its anchors, then its non-anchors, each symbol `round(y − μ)` under the
//! Gaussian table chosen by its scale. Version 2 streams hold all parts in one entropy-coded
//! payload; version 1 streams, still decoded, framed each part as a section.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use entropy::GaussianTables;

use crate::bitstream::v1::SectionKind;
use crate::bitstream::{self, Extras, FormatError, Header, Payload, Stream};
use crate::detnet::{EntropyPath, Map};
use crate::image_io::Planar;
use crate::metrics::psnr_rgb8;
use crate::model::Model;
use crate::model::arch::{self, HYPER, M, PAD_TO, SLICES, Y_STRIDE, Z};
use crate::weights::{ModelFile, WeightsError};
use crate::{alpha, rate, refine};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Entropy(#[from] entropy::CodingError),
    #[error("quality {0} is outside 1..=8")]
    BadQuality(f32),
    #[error(
        "stream was made by model {stream:016x}, but the loaded model is {loaded:016x}; decode with the model that encoded it"
    )]
    WrongWeights { stream: u64, loaded: u64 },
    #[error("stream is inconsistent: {0}")]
    Inconsistent(String),
    #[error(
        "latent refinement takes images of at most {max} pixels (its memory grows with the image); this one is {width}x{height}",
        max = refine::MAX_PIXELS
    )]
    TooLargeToRefine { width: usize, height: usize },
    #[error(
        "no stream of this image fits in {max_bytes} bytes: the smallest (quality 1) takes {smallest}"
    )]
    BudgetTooSmall { max_bytes: usize, smallest: usize },
    #[error(
        "no stream of this image reaches {target} dB PSNR: the best (quality 8) reaches {best:.2} dB"
    )]
    PsnrUnreachable { target: f64, best: f64 },
}

/// What [`Codec::compress_within`] wrote.
#[derive(Debug)]
pub struct Fitted {
    pub bytes: Vec<u8>,
    /// The quality chosen (a multiple of 1/256).
    pub quality: f32,
    /// The size in bytes of the stream written, or for a PSNR target its PSNR in dB.
    pub measure: f64,
    /// Qualities encoded during the search.
    pub probes: usize,
    /// With refinement: what it did, and whether its stream still met the target (if not,
    /// the unrefined stream was kept).
    pub refined: Option<(refine::Report, bool)>,
}

/// A model ready to code: Burn transforms on `B` plus the deterministic entropy path.
pub struct Codec<B: Backend> {
    pub file: ModelFile,
    pub model: Model<B>,
    path: EntropyPath,
    device: B::Device,
    /// Tile side of the transforms, in latent pixels (see [`TILE`]).
    tile: usize,
}

/// The analysis and synthesis transforms run on tiles of this many latent pixels per side
/// (768 image pixels), each extended by [`MARGIN`] on every side and cropped back, so their
/// memory stays bounded whatever the image size: peak memory is several hundred MB for the
/// transforms plus about 60 bytes per image pixel for the image, the latents and the entropy
/// path. The margin of 64 pixels covers the analysis transform's 61-pixel receptive field, so
/// tiling changes results only by float rounding.
///
/// Why 768: a tile recomputes its margins, so an image cut in two pays for up to two margins'
/// worth of pixels twice; at 512 a 768×512 picture (Kodak's size) was cut in two, and decoding
/// it took about 10% longer than as one tile, which costs about 100 MiB more peak memory
/// (`ember bench codec`).
pub const TILE: usize = 48;
/// Overlap of neighbouring tiles, in latent pixels.
pub const MARGIN: usize = 4;

/// The integer symbols of a coded image, for tests and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latents {
    pub z: Vec<i32>,
    /// ŷ's symbols `round(y − μ)` per slice: anchors then non-anchors.
    pub y: Vec<Vec<i32>>,
}

/// A checkerboard position is an anchor when `(row + col)` is even.
fn is_anchor(pos: usize, w: usize) -> bool {
    (pos / w + pos % w).is_multiple_of(2)
}

/// Quality as stored: 1/256 steps. Encoder and decoder both use the stored value.
fn quality_q8(q: f32) -> Result<u16, CodecError> {
    if !(1.0..=8.0).contains(&q) {
        return Err(CodecError::BadQuality(q));
    }
    Ok((q * 256.0).round() as u16)
}

/// Q16 scale for table selection; σ is bit-exact from [`crate::detnet`], so is this.
fn scale_q16(s: f32) -> u32 {
    (s * 65536.0) as u32
}

impl<B: Backend> Codec<B> {
    pub fn new(file: ModelFile, device: B::Device) -> Result<Self, CodecError> {
        let model = file.to_burn::<B>(&device)?;
        let path = EntropyPath::load(&file)?;
        Ok(Self {
            file,
            model,
            path,
            device,
            tile: TILE,
        })
    }

    /// Uses tiles of `tile` latent pixels instead of [`TILE`] (for tests of the tiling).
    pub fn with_tile(mut self, tile: usize) -> Self {
        self.tile = tile.max(1);
        self
    }

    /// Runs `f` on overlapping tiles of a `[c, h, w]` plane set whose pixels are `scale` times
    /// the latent grid `hy × wy`. `f` gets a crop (tile plus margin) and returns its output,
    /// `out_c` channels at `out_scale` times the latent grid; the tile's interior is pasted
    /// into the result. Tiles are visited in raster order.
    fn tiled(
        &self,
        input: &Map,
        scale: usize,
        (hy, wy): (usize, usize),
        out_c: usize,
        out_scale: usize,
        f: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
    ) -> Map {
        let mut out = Map::zeros(out_c, hy * out_scale, wy * out_scale);
        for ty in (0..hy).step_by(self.tile) {
            for tx in (0..wy).step_by(self.tile) {
                let (y1, x1) = ((ty + self.tile).min(hy), (tx + self.tile).min(wy));
                let (ys, xs) = (ty.saturating_sub(MARGIN), tx.saturating_sub(MARGIN));
                let (ye, xe) = ((y1 + MARGIN).min(hy), (x1 + MARGIN).min(wy));
                let (ch, cw) = ((ye - ys) * scale, (xe - xs) * scale);
                let mut crop = Vec::with_capacity(input.c * ch * cw);
                for c in 0..input.c {
                    for row in ys * scale..ye * scale {
                        let at = (c * input.h + row) * input.w + xs * scale;
                        crop.extend_from_slice(&input.data[at..at + cw]);
                    }
                }
                let result = Self::to_vec(f(self.tensor(crop, [1, input.c, ch, cw])));
                let (rh, rw) = ((ye - ys) * out_scale, (xe - xs) * out_scale);
                let (oy, ox) = ((ty - ys) * out_scale, (tx - xs) * out_scale);
                let (th, tw) = ((y1 - ty) * out_scale, (x1 - tx) * out_scale);
                for c in 0..out_c {
                    for row in 0..th {
                        let src = (c * rh + oy + row) * rw + ox;
                        let dst = (c * out.h + ty * out_scale + row) * out.w + tx * out_scale;
                        out.data[dst..dst + tw].copy_from_slice(&result[src..src + tw]);
                    }
                }
            }
        }
        out
    }

    fn tensor(&self, data: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(data, shape), &self.device)
    }

    fn to_vec(t: Tensor<B, 4>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("float tensor")
    }

    /// The model's own estimate of the coded size in bits (`−Σ log2 p` of the rounded
    /// latents, header excluded), computed in float on this backend over the whole image.
    pub fn estimate_bits(&self, image: &Planar, q: f32) -> Result<f64, CodecError> {
        let qf = f32::from(quality_q8(q)?) / 256.0;
        let (pixels, pw, ph) = image.padded(PAD_TO);
        let bits = self
            .model
            .forward(self.tensor(pixels, [1, 3, ph, pw]), qf, false)
            .bits;
        Ok(f64::from(
            bits.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("float tensor")[0],
        ))
    }

    /// Compresses `image` at quality `q` (1..=8).
    pub fn compress(&self, image: &Planar, q: f32) -> Result<Vec<u8>, CodecError> {
        Ok(self.compress_with_latents(image, q)?.0)
    }

    /// [`compress`](Self::compress), also returning the coded symbols.
    pub fn compress_with_latents(
        &self,
        image: &Planar,
        q: f32,
    ) -> Result<(Vec<u8>, Latents), CodecError> {
        let (bytes, latents, _) = self.compress_refined(image, q, 0)?;
        Ok((bytes, latents))
    }

    /// [`compress`](Self::compress) after `steps` steps of latent refinement
    /// ([`crate::refine`]; none for 0), which also says what the refinement did. The stream
    /// decodes with the same decoder; only the encoder spends more time.
    pub fn compress_refined(
        &self,
        image: &Planar,
        q: f32,
        steps: usize,
    ) -> Result<(Vec<u8>, Latents, Option<refine::Report>), CodecError> {
        let q8 = quality_q8(q)?;
        let image = &*coded(image);
        Self::check_refinable(image, steps)?;
        let (x, y) = self.analyse(image, steps > 0);
        let y = self.gained(&y, q8);
        let (y, report) = match x {
            Some(x) => {
                let (y, report) = self.refine(image, x, y, q8, steps)?;
                (y, Some(report))
            }
            None => (y, None),
        };
        let plane = packed_alpha(image);
        let (bytes, latents, ..) = self.encode_latent(image, plane.as_deref(), &y, q8)?;
        Ok((bytes, latents, report))
    }

    /// Encodes `image` at the quality that meets `target` ([`crate::rate`]): the highest whose
    /// whole stream fits a byte budget, or the lowest whose decoded image reaches a PSNR. With
    /// `steps > 0` it then refines the latent at that quality and keeps the refined stream if
    /// it still meets the target. The analysis transform runs once; each quality tried costs
    /// one run of the entropy path and coder, and for a PSNR one synthesis, the decoder's own
    /// (its `ŷ` is the decoder's, bit for bit). Unrefined, the stream is byte for byte what
    /// [`compress`](Self::compress) writes at the quality reported (refinement draws noise for
    /// its gradients, so refined streams differ run to run).
    pub fn compress_within(
        &self,
        image: &Planar,
        target: rate::Target,
        steps: usize,
    ) -> Result<Fitted, CodecError> {
        let image = &*coded(image);
        Self::check_refinable(image, steps)?;
        let (x, y) = self.analyse(image, steps > 0);
        let stored = matches!(target, rate::Target::MinPsnr(_)).then(|| image.as_stored());
        // Packed once: every quality tried writes the same plane.
        let plane = packed_alpha(image);
        let measure = |y: &Map, q8: u16| {
            let (bytes, _, y_hat, hyper) = self.encode_latent(image, plane.as_deref(), y, q8)?;
            let measure = match &stored {
                None => bytes.len() as f64,
                Some(original) => {
                    let decoded = self.reconstruct(&y_hat, &hyper, &self.header(image, q8));
                    psnr_rgb8(original, &decoded.as_stored())
                }
            };
            Ok::<_, CodecError>((measure, bytes))
        };
        let fit = match rate::search(target, |q8| measure(&self.gained(&y, q8), q8))? {
            rate::Outcome::Meets(fit) => fit,
            rate::Outcome::Misses { nearest } => {
                return Err(match target {
                    rate::Target::MaxBytes(max_bytes) => CodecError::BudgetTooSmall {
                        max_bytes,
                        smallest: nearest as usize,
                    },
                    rate::Target::MinPsnr(db) => CodecError::PsnrUnreachable {
                        target: db,
                        best: nearest,
                    },
                });
            }
        };
        let mut fitted = Fitted {
            bytes: fit.stream,
            quality: f32::from(fit.quality_q8) / 256.0,
            measure: fit.measure,
            probes: fit.probes,
            refined: None,
        };
        if let Some(x) = x {
            let (y, report) = self.refine(
                image,
                x,
                self.gained(&y, fit.quality_q8),
                fit.quality_q8,
                steps,
            )?;
            let (refined, bytes) = measure(&y, fit.quality_q8)?;
            let meets = target.met_by(refined);
            if meets {
                (fitted.bytes, fitted.measure) = (bytes, refined);
            }
            fitted.refined = Some((report, meets));
        }
        Ok(fitted)
    }

    fn check_refinable(image: &Planar, steps: usize) -> Result<(), CodecError> {
        let (width, height) = (image.width as usize, image.height as usize);
        if steps > 0 && width * height > refine::MAX_PIXELS {
            return Err(CodecError::TooLargeToRefine { width, height });
        }
        Ok(())
    }

    /// The padded image as planes (kept only when `keep_image`, for refinement: it is the
    /// largest buffer of a big image) and its latent before any quality's gain.
    fn analyse(&self, image: &Planar, keep_image: bool) -> (Option<Map>, Map) {
        let (pixels, pw, ph) = image.padded(PAD_TO);
        let (hy, wy) = (ph / Y_STRIDE, pw / Y_STRIDE);
        let x = Map {
            c: 3,
            h: ph,
            w: pw,
            data: pixels,
        };
        let y = self.tiled(&x, Y_STRIDE, (hy, wy), M, 1, |t| {
            self.model.analysis_ungained(t)
        });
        (keep_image.then_some(x), y)
    }

    /// `y · gain(q)`, channel by channel: the same single-precision products as
    /// [`Model::analysis`] computes on any backend.
    fn gained(&self, y: &Map, q8: u16) -> Map {
        let gain = Self::to_vec(self.model.gain_for(f32::from(q8) / 256.0, false));
        let plane = y.h * y.w;
        let data = y
            .data
            .chunks(plane)
            .zip(&gain)
            .flat_map(|(channel, &g)| channel.iter().map(move |&v| v * g))
            .collect();
        Map { data, ..*y }
    }

    /// [`refine::refine`] on planes: the refined gained latent and what refinement did.
    fn refine(
        &self,
        image: &Planar,
        x: Map,
        y: Map,
        q8: u16,
        steps: usize,
    ) -> Result<(Map, refine::Report), CodecError> {
        let model = self.file.to_burn::<Autodiff<B>>(&self.device)?;
        let (h, w) = (y.h, y.w);
        let (refined, report) = refine::refine(
            &model,
            self.tensor(x.data, [1, 3, x.h, x.w]),
            self.tensor(y.data, [1, M, y.h, y.w]),
            (image.height as usize, image.width as usize),
            f32::from(q8) / 256.0,
            steps,
        );
        let data = Self::to_vec(refined);
        Ok((Map { c: M, h, w, data }, report))
    }

    /// Codes the gained latent `y` of `image` at stored quality `q8` into a stream, with the
    /// image's colour profile and its alpha `plane` (packed by [`packed_alpha`]): ẑ by
    /// rounding the hyper-analysis of `y`, then every slice's passes.
    fn encode_latent(
        &self,
        image: &Planar,
        plane: Option<&[u8]>,
        y: &Map,
        q8: u16,
    ) -> Result<(Vec<u8>, Latents, Map, Map), CodecError> {
        let (hy, wy) = (y.h, y.w);
        let z = self
            .model
            .hyper_analysis(self.tensor(y.data.clone(), [1, M, hy, wy]));
        let z_sym: Vec<i32> = Self::to_vec(z)
            .iter()
            .map(|v| v.round_ties_even() as i32)
            .collect();
        let (hz, wz) = (hy / 4, wy / 4);
        let z_hat = Map {
            c: Z,
            h: hz,
            w: wz,
            data: z_sym.iter().map(|&v| v as f32).collect(),
        };
        let gaussian = GaussianTables::shared().tables();
        let mut coder = entropy::Encoder::new();
        coder.push(
            &z_sym,
            &z_indexes(Z, hz * wz),
            self.file.factorized.tables(),
        )?;
        let (y_hat, hyper, y_syms) = self.code_slices(&z_hat, hy, wy, |k, _, pass| {
            let start = arch::slice_start(k) * hy * wy;
            let syms: Vec<i32> = pass
                .positions
                .iter()
                .zip(&pass.mean)
                .map(|(&i, &mu)| (y.data[start + i] - mu).round_ties_even() as i32)
                .collect();
            coder.push(&syms, &pass.tables, gaussian)?;
            Ok(syms)
        })?;
        let extras = Extras {
            profile: image.profile.as_deref(),
            alpha: plane,
        };
        let bytes = bitstream::write(&self.header(image, q8), extras, &coder.finish())?;
        Ok((
            bytes,
            Latents {
                z: z_sym,
                y: y_syms,
            },
            y_hat,
            hyper,
        ))
    }

    /// The header of `image`'s stream at quality `q8`.
    fn header(&self, image: &Planar, q8: u16) -> Header {
        Header {
            model: self.file.model,
            weights_hash: self.file.hash,
            width: image.width,
            height: image.height,
            channels: image.channels,
            bit_depth: image.bit_depth,
            quality_q8: q8,
        }
    }

    /// The decoded pixels from `ŷ` and the hyper features its parameters came from: the
    /// latent residual prediction where the model has one, then the synthesis at the header's
    /// quality, cropped to the header's size and clamped to `[0, 1]` (no colour profile or
    /// alpha: those are the stream's). Each runs on tiles of its own, so that the residual
    /// prediction's reach is covered by the margin alone.
    fn reconstruct(&self, y_hat: &Map, hyper: &Map, h: &Header) -> Planar {
        let (hy, wy) = (y_hat.h, y_hat.w);
        let (pw, ph) = (wy * Y_STRIDE, hy * Y_STRIDE);
        let q = f32::from(h.quality_q8) / 256.0;
        let predicted = self.model.lrp.as_ref().map(|lrp| {
            let both = Map {
                c: M + HYPER,
                h: hy,
                w: wy,
                data: [&y_hat.data[..], &hyper.data[..]].concat(),
            };
            self.tiled(&both, 1, (hy, wy), M, 1, |t| {
                lrp.forward(t.clone().narrow(1, 0, M), t.narrow(1, M, HYPER))
            })
        });
        let full = self
            .tiled(
                predicted.as_ref().unwrap_or(y_hat),
                1,
                (hy, wy),
                3,
                Y_STRIDE,
                |t| self.model.synthesis(t, q),
            )
            .data;
        let rgb = Planar::unpadded(&full, (pw, ph), (h.width as usize, h.height as usize));
        Planar {
            width: h.width,
            height: h.height,
            channels: h.channels,
            bit_depth: h.bit_depth,
            rgb,
            profile: None,
            alpha: None,
        }
    }

    /// Decompresses a stream made by a model with the same weights.
    pub fn decompress(&self, bytes: &[u8]) -> Result<Planar, CodecError> {
        Ok(self.decompress_with_latents(bytes)?.0)
    }

    /// [`decompress`](Self::decompress), also returning the decoded symbols.
    pub fn decompress_with_latents(&self, bytes: &[u8]) -> Result<(Planar, Latents), CodecError> {
        let Decoded {
            header,
            y_hat,
            hyper,
            latents,
            profile,
            alpha,
        } = self.decode_latents(bytes)?;
        let image = Planar {
            profile,
            alpha,
            ..self.reconstruct(&y_hat, &hyper, &header)
        };
        Ok((image, latents))
    }

    /// Everything [`decompress`](Self::decompress) reads from `bytes`, before the synthesis
    /// transform: the container, the entropy-coded latents with their deterministic entropy
    /// parameters, the alpha plane and the colour profile. Separate because it is all of the
    /// decoder that untrusted bytes reach (the fuzzer's target), while the synthesis only
    /// computes on a latent map of the header's size.
    pub fn decode_latents(&self, bytes: &[u8]) -> Result<Decoded, CodecError> {
        let stream = bitstream::read(bytes)?;
        let h = &stream.header;
        if h.weights_hash != self.file.hash {
            return Err(CodecError::WrongWeights {
                stream: h.weights_hash,
                loaded: self.file.hash,
            });
        }
        let (pw, ph) = (
            (h.width as usize).next_multiple_of(PAD_TO),
            (h.height as usize).next_multiple_of(PAD_TO),
        );
        let (hy, wy) = (ph / Y_STRIDE, pw / Y_STRIDE);
        let (hz, wz) = (hy / 4, wy / 4);
        // The symbol count of each part, in coding order, and the tables it is coded under.
        // (row + col) even on an h×w grid: half the positions, rounded up.
        let anchors = (hy * wy).div_ceil(2);
        let gaussian = GaussianTables::shared().tables();
        let parts: Vec<(u64, &[entropy::CdfTable])> =
            std::iter::once(((Z * hz * wz) as u64, self.file.factorized.tables()))
                .chain(SLICES.iter().flat_map(|&c| {
                    [anchors, hy * wy - anchors].map(|n| ((c * n) as u64, gaussian))
                }))
                .collect();
        let padding = (pw - h.width as usize, ph - h.height as usize);
        let mut source = Source::open(&stream, &parts, padding)?;
        if self.file.factorized.tables().len() != Z {
            return Err(CodecError::Inconsistent(format!(
                "model has {} hyper-latent tables for {Z} channels",
                self.file.factorized.tables().len()
            )));
        }
        let z_sym = source.read(&z_indexes(Z, hz * wz), self.file.factorized.tables())?;
        let z_hat = Map {
            c: Z,
            h: hz,
            w: wz,
            data: z_sym.iter().map(|&v| v as f32).collect(),
        };
        let (y_hat, hyper, y_syms) = self.code_slices(&z_hat, hy, wy, |_, _, pass| {
            source.read(&pass.tables, gaussian)
        })?;
        source.finish()?;
        // Only now, with the colour payload found consistent with the image's size, is the
        // alpha plane's buffer (the image's size) allocated.
        let alpha = (stream.extras.alpha)
            .map(|a| alpha::unpack(a, h.width as usize, h.height as usize, h.bit_depth))
            .transpose()
            .map_err(FormatError::BadAlpha)?;
        Ok(Decoded {
            header: stream.header,
            y_hat,
            hyper,
            latents: Latents {
                z: z_sym,
                y: y_syms,
            },
            profile: stream.extras.profile.map(<[u8]>::to_vec),
            alpha,
        })
    }
}

/// What a stream holds, decoded up to the synthesis transform ([`Codec::decode_latents`]).
pub struct Decoded {
    pub header: Header,
    /// `ŷ`, the latent the synthesis transform takes.
    pub y_hat: Map,
    /// The hyper features (`[HYPER, h, w]`) the entropy parameters were computed from: with
    /// `ŷ`, the input of the latent residual prediction.
    pub hyper: Map,
    /// The decoded symbols.
    pub latents: Latents,
    /// The colour profile, if the stream carries one.
    pub profile: Option<Vec<u8>>,
    /// The alpha samples, if the stream carries an alpha plane.
    pub alpha: Option<Vec<u16>>,
}

/// The image the encoder codes: `image` itself, or, where it has fully transparent pixels,
/// `image` with their colour replaced by a smooth fill ([`alpha::fill_invisible`]), which
/// cannot be seen and costs the fewest bits.
fn coded(image: &Planar) -> std::borrow::Cow<'_, Planar> {
    match &image.alpha {
        Some(a) if a.contains(&0) => {
            let mut filled = image.clone();
            let (w, h) = (image.width as usize, image.height as usize);
            alpha::fill_invisible(&mut filled.rgb, a, w, h);
            std::borrow::Cow::Owned(filled)
        }
        _ => std::borrow::Cow::Borrowed(image),
    }
}

/// `image`'s alpha plane as a stream stores it ([`alpha::pack`]), if it has one.
fn packed_alpha(image: &Planar) -> Option<Vec<u8>> {
    (image.alpha.as_deref()).map(|a| alpha::pack(a, image.width as usize, image.bit_depth))
}

/// Where the decoder reads the parts of a stream from, in coding order.
enum Source<'a> {
    /// Version 2: one entropy-coded stream.
    Single(entropy::Decoder),
    /// Version 1: one stream per section, and the next section to read.
    Sections(Vec<&'a [u8]>, usize),
}

impl<'a> Source<'a> {
    /// The parts of `stream`'s payload, after checking that it can hold `parts` (symbol
    /// counts and tables, in coding order), so that a crafted header claiming 2^28 pixels over
    /// a few bytes fails before anything of that size is allocated. A version 1 stream must
    /// also frame exactly the model's parts and record `padding` (right, bottom), which version
    /// 2 derives from the size.
    fn open(
        stream: &Stream<'a>,
        parts: &[(u64, &[entropy::CdfTable])],
        padding: (usize, usize),
    ) -> Result<Self, CodecError> {
        let too_few = |i: Option<usize>, bytes: usize| {
            CodecError::Inconsistent(format!(
                "{} has {bytes} bytes, too few for the symbols of a {}x{} image",
                i.map_or("the payload".to_string(), |i| format!("section {i}")),
                stream.header.width,
                stream.header.height
            ))
        };
        Ok(match &stream.payload {
            Payload::Single(data) => {
                if !entropy::can_hold(data.len(), parts) {
                    return Err(too_few(None, data.len()));
                }
                Source::Single(entropy::Decoder::new(data)?)
            }
            Payload::Sections {
                sections,
                pad_right,
                pad_bottom,
            } => {
                if (usize::from(*pad_right), usize::from(*pad_bottom)) != padding {
                    return Err(CodecError::Inconsistent(format!(
                        "padding {pad_right}x{pad_bottom} does not round {}x{} to a multiple of {PAD_TO}",
                        stream.header.width, stream.header.height
                    )));
                }
                let expected: Vec<(SectionKind, u8)> =
                    std::iter::once((SectionKind::Hyper, 0))
                        .chain((0..SLICES.len() as u8).flat_map(|k| {
                            [(SectionKind::Anchors, k), (SectionKind::NonAnchors, k)]
                        }))
                        .collect();
                let found: Vec<(SectionKind, u8)> =
                    sections.iter().map(|s| (s.kind, s.index)).collect();
                if found != expected {
                    return Err(CodecError::Inconsistent(format!(
                        "expected {} sections (hyper-latent, then anchors and non-anchors of {} slices), found {:?}",
                        expected.len(),
                        SLICES.len(),
                        found
                    )));
                }
                for (i, (section, part)) in sections.iter().zip(parts).enumerate() {
                    if !entropy::can_hold(section.data.len(), std::slice::from_ref(part)) {
                        return Err(too_few(Some(i), section.data.len()));
                    }
                }
                Source::Sections(sections.iter().map(|s| s.data).collect(), 0)
            }
        })
    }

    /// The next part: `indexes.len()` symbols under `tables`.
    fn read(
        &mut self,
        indexes: &[u16],
        tables: &[entropy::CdfTable],
    ) -> Result<Vec<i32>, CodecError> {
        match self {
            Source::Single(decoder) => {
                let mut out = Vec::new();
                decoder.decode_into(indexes, tables, &mut out)?;
                Ok(out)
            }
            Source::Sections(sections, next) => {
                let data = sections[*next];
                *next += 1;
                Ok(entropy::decode(data, indexes, tables)?)
            }
        }
    }

    /// Checks that nothing is left after the last part.
    fn finish(self) -> Result<(), CodecError> {
        match self {
            Source::Single(decoder) => Ok(decoder.finish()?),
            // Each section's decode already checked its own end.
            Source::Sections(..) => Ok(()),
        }
    }
}

/// One checkerboard pass of one slice, as [`Codec::code_slices`] hands it to the coder.
struct Pass {
    /// Positions coded in this pass, as indices into the slice's `[c, h, w]` planes, in
    /// coding order (channel-major, then row-major).
    positions: Vec<usize>,
    /// Predicted mean at each position.
    mean: Vec<f32>,
    /// Gaussian table index at each position.
    tables: Vec<u16>,
}

impl<B: Backend> Codec<B> {
    /// Runs the entropy model over every slice and pass in coding order — the one wiring of
    /// contexts that encoder and decoder share. `code(k, anchors, pass)` produces the pass's
    /// symbols (the encoder by quantizing `y`, the decoder by reading the stream); the driver
    /// reconstructs `ŷ = symbol + μ`, which feeds the later contexts. Returns `ŷ`, the hyper
    /// features and the symbols of each slice (anchors, then non-anchors).
    fn code_slices(
        &self,
        z_hat: &Map,
        hy: usize,
        wy: usize,
        mut code: impl FnMut(usize, bool, &Pass) -> Result<Vec<i32>, CodecError>,
    ) -> Result<(Map, Map, Vec<Vec<i32>>), CodecError> {
        let hyper = self.path.hyper(z_hat);
        let gauss = GaussianTables::shared();
        let hw = hy * wy;
        let mut y_hat = Map::zeros(M, hy, wy);
        let mut symbols = Vec::with_capacity(SLICES.len());
        // Each pass's pixel positions, the same for every slice. Parameters are needed only
        // there, and the aggregation is per-position: it runs on the gathered positions.
        let pass_pixels: [Vec<usize>; 2] =
            [true, false].map(|anchors| (0..hw).filter(|&p| is_anchor(p, wy) == anchors).collect());
        for (k, &c) in SLICES.iter().enumerate() {
            let start = arch::slice_start(k);
            let prev = (k > 0).then(|| y_hat.channels(0, start));
            let base = self.path.slice_base(k, &hyper, prev.as_ref());
            let mut slice_hat = Map::zeros(c, hy, wy);
            let mut slice_syms: Vec<i32> = Vec::new();
            for (anchors, pixels) in [(true, &pass_pixels[0]), (false, &pass_pixels[1])] {
                let references = if anchors {
                    vec![Map::zeros(
                        self.path.unknown_in_anchor_pass(k),
                        1,
                        pixels.len(),
                    )]
                } else {
                    let spatial = self.path.spatial(k, &slice_hat).gather(pixels);
                    // The anchor pass's symbols are `ŷ − μ` at the anchors, channel-major.
                    let residuals = Map {
                        c,
                        h: 1,
                        w: pass_pixels[0].len(),
                        data: slice_syms.iter().map(|&s| s as f32).collect(),
                    };
                    let last =
                        (k > 0).then(|| y_hat.channels(arch::slice_start(k - 1), SLICES[k - 1]));
                    let global = self.path.global(
                        k,
                        &base,
                        last.as_ref(),
                        &pass_pixels[0],
                        &residuals,
                        pixels,
                    );
                    std::iter::once(spatial).chain(global).collect()
                };
                let base_here = base.gather(pixels);
                let inputs: Vec<&Map> = std::iter::once(&base_here).chain(&references).collect();
                let p = self.path.params(k, &inputs);
                let positions: Vec<usize> = (0..c)
                    .flat_map(|ch| pixels.iter().map(move |&pos| ch * hw + pos))
                    .collect();
                // `p` is `[c, 1, pixels]`: channel-major in the same order as `positions`.
                let pass = Pass {
                    tables: p
                        .scale
                        .data
                        .iter()
                        .map(|&s| u16::from(gauss.index_for_scale(scale_q16(s))))
                        .collect(),
                    mean: p.mean.data,
                    positions,
                };
                let syms = code(k, anchors, &pass)?;
                for ((&i, &mu), &sym) in pass.positions.iter().zip(&pass.mean).zip(&syms) {
                    slice_hat.data[i] = sym as f32 + mu;
                }
                slice_syms.extend(syms);
            }
            y_hat.data[start * hw..(start + c) * hw].copy_from_slice(&slice_hat.data);
            symbols.push(slice_syms);
        }
        Ok((y_hat, hyper, symbols))
    }
}

/// Table index of each symbol of ẑ: channel-major order, each channel under its own table.
fn z_indexes(channels: usize, per_channel: usize) -> Vec<u16> {
    (0..channels * per_channel)
        .map(|i| (i / per_channel) as u16)
        .collect()
}
