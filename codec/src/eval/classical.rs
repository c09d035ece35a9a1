//! Classical codecs as baselines, run through Debian's command-line tools on the same images and
//! measured by the same code as Ember ([`super::evaluate_with`]).
//!
//! Every codec is described by its encode and decode command lines with placeholders, and those
//! exact lines go into the results JSON, so each point can be reproduced by hand. Settings follow
//! what the learned-compression literature compares against and what was measured on Kodak
//! with Debian's tools: `cwebp -m 6`; AVIF and HEVC in 4:4:4 with full-range BT.601 and accurate
//! rounding; x265 without its version SEI (`info=0`, ≈ 2 KB per stream) and tuned for PSNR
//! (psy-rd off; it otherwise spends chroma bits on perceptual grain).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::image_io::Planar;

use super::Coded;

/// A classical codec with a command-line encoder and decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Classical {
    /// libjpeg-turbo's `cjpeg`/`djpeg` (4:2:0, optimized Huffman tables).
    Jpeg,
    /// libwebp's `cwebp -m 6` / `dwebp`.
    Webp,
    /// libavif with aom: `avifenc -y 444 -s 4` / `avifdec`.
    Avif,
    /// libjxl's `cjxl -e 7` / `djxl`.
    Jxl,
    /// HEVC intra, x265 through `ffmpeg`, 4:4:4.
    Hevc,
}

/// Placeholders in command templates: `{q}` quality, `{png}`/`{ppm}` the source image,
/// `{out}` the stream, `{dec}` the decoded image.
type Template = Vec<&'static str>;

const HEVC_TO_YUV: &str =
    "scale=out_color_matrix=bt601:out_range=full:flags=accurate_rnd+full_chroma_int";
const HEVC_TO_RGB: &str =
    "scale=in_color_matrix=bt601:in_range=full:flags=accurate_rnd+full_chroma_int";

/// x265 through ffmpeg, 4:4:4 full-range BT.601, with `x265_params`; tuned for PSNR unless
/// lossless (where tuning does not apply).
fn hevc_encode(x265_params: &'static str, tune_psnr: bool) -> Template {
    let mut t = vec![
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-i",
        "{png}",
        "-vf",
        HEVC_TO_YUV,
        "-pix_fmt",
        "yuv444p",
        "-color_range",
        "pc",
        "-c:v",
        "libx265",
        "-preset",
        "slow",
    ];
    if tune_psnr {
        t.extend(["-tune", "psnr"]);
    }
    t.extend([
        "-x265-params",
        x265_params,
        "-frames:v",
        "1",
        "-f",
        "hevc",
        "{out}",
    ]);
    t
}

impl Classical {
    pub const ALL: [Classical; 5] = [
        Classical::Jpeg,
        Classical::Webp,
        Classical::Avif,
        Classical::Jxl,
        Classical::Hevc,
    ];

    /// File stem of its results and the curve's name.
    pub fn name(self) -> &'static str {
        match self {
            Classical::Jpeg => "jpeg",
            Classical::Webp => "webp",
            Classical::Avif => "avif",
            Classical::Jxl => "jxl",
            Classical::Hevc => "hevc-x265",
        }
    }

    /// Quality settings spanning about 0.1–2 bpp on Kodak, smallest files first.
    pub fn default_qualities(self) -> &'static [f32] {
        match self {
            Classical::Jpeg => &[5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 85.0, 92.0],
            Classical::Webp => &[0.0, 5.0, 15.0, 30.0, 45.0, 60.0, 75.0, 85.0, 95.0],
            Classical::Avif => &[58.0, 52.0, 46.0, 40.0, 34.0, 28.0, 22.0, 16.0],
            Classical::Jxl => &[12.0, 8.0, 5.0, 3.5, 2.5, 1.7, 1.2, 0.8, 0.5],
            Classical::Hevc => &[44.0, 40.0, 36.0, 32.0, 28.0, 24.0, 20.0],
        }
    }

    /// Whether `q` is a setting the encoder accepts.
    pub fn accepts(self, q: f32) -> bool {
        let integral = q.fract() == 0.0;
        match self {
            Classical::Jpeg => integral && (1.0..=100.0).contains(&q),
            Classical::Webp => (0.0..=100.0).contains(&q),
            Classical::Avif => integral && (0.0..=63.0).contains(&q),
            Classical::Jxl => (0.0..=25.0).contains(&q),
            Classical::Hevc => integral && (0.0..=51.0).contains(&q),
        }
    }

    fn encode_template(self) -> Template {
        match self {
            Classical::Jpeg => vec![
                "cjpeg",
                "-quality",
                "{q}",
                "-optimize",
                "-outfile",
                "{out}",
                "{ppm}",
            ],
            Classical::Webp => vec![
                "cwebp", "-quiet", "-m", "6", "-q", "{q}", "{png}", "-o", "{out}",
            ],
            Classical::Avif => vec![
                "avifenc", "-y", "444", "-s", "4", "--min", "{q}", "--max", "{q}", "{png}", "{out}",
            ],
            Classical::Jxl => vec!["cjxl", "{png}", "{out}", "-d", "{q}", "-e", "7", "--quiet"],
            Classical::Hevc => hevc_encode("qp={q}:info=0:log-level=error", true),
        }
    }

    fn decode_template(self) -> Template {
        match self {
            Classical::Jpeg => vec!["djpeg", "-ppm", "-outfile", "{dec}", "{out}"],
            Classical::Webp => vec!["dwebp", "-quiet", "{out}", "-ppm", "-o", "{dec}"],
            Classical::Avif => vec!["avifdec", "{out}", "{dec}"],
            Classical::Jxl => vec!["djxl", "{out}", "{dec}"],
            Classical::Hevc => vec![
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-i",
                "{out}",
                "-vf",
                HEVC_TO_RGB,
                "-pix_fmt",
                "rgb24",
                "{dec}",
            ],
        }
    }

    /// The encoder's setting with no quantization loss, where the codec converts RGB to YUV:
    /// coding at it measures the conversion floor, the best PSNR any point can reach.
    fn floor_template(self) -> Option<(Template, f32)> {
        match self {
            Classical::Avif => Some((self.encode_template(), 0.0)),
            Classical::Hevc => Some((hevc_encode("lossless=1:info=0:log-level=error", false), 0.0)),
            _ => None,
        }
    }

    fn stream_ext(self) -> &'static str {
        match self {
            Classical::Jpeg => "jpg",
            Classical::Webp => "webp",
            Classical::Avif => "avif",
            Classical::Jxl => "jxl",
            Classical::Hevc => "hevc",
        }
    }

    fn decoded_ext(self) -> &'static str {
        match self {
            Classical::Jpeg | Classical::Webp => "ppm",
            _ => "png",
        }
    }

    /// The Debian package that provides its tools, for error messages.
    fn package(self) -> &'static str {
        match self {
            Classical::Jpeg => "libjpeg-turbo-progs",
            Classical::Webp => "webp",
            Classical::Avif => "libavif-bin",
            Classical::Jxl => "libjxl-tools",
            Classical::Hevc => "ffmpeg",
        }
    }

    /// The exact command lines, for the results' description.
    pub fn describe(self) -> String {
        let mut s = format!(
            "encode: {}; decode: {}",
            self.encode_template().join(" "),
            self.decode_template().join(" ")
        );
        if let Some((t, q)) = self.floor_template() {
            s.push_str(&format!(
                "; conversion floor: {} with {{q}}={q}",
                t.join(" ")
            ));
        }
        s
    }

    /// Fails with the package to install when a tool is missing.
    pub fn check_tools(self) -> Result<(), String> {
        for tool in [self.encode_template()[0], self.decode_template()[0]] {
            if find_in_path(tool).is_none() {
                return Err(format!(
                    "{tool} not found: install Debian's {} (scripts/baselines.sh does)",
                    self.package()
                ));
            }
        }
        Ok(())
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A scratch folder for one evaluation, removed when dropped.
pub struct Runner {
    codec: Classical,
    dir: PathBuf,
    /// Checksum of the image whose PNG/PPM sources are in `dir`: an image is coded at every
    /// quality in turn, and its sources are written once.
    sources: std::cell::Cell<Option<u32>>,
}

impl Runner {
    pub fn new(codec: Classical) -> Result<Self, String> {
        codec.check_tools()?;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ember-eval-{}-{}-{}",
            codec.name(),
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self {
            codec,
            dir,
            sources: std::cell::Cell::new(None),
        })
    }

    /// Codes `img` at quality `q` (8-bit RGB in, as the tools take it) and decodes it back.
    pub fn code(&self, img: &Planar, q: f32) -> Result<Coded, String> {
        self.code_with(self.codec.encode_template(), img, q)
    }

    /// Codes `img` at the codec's lossless setting, if it has a conversion floor.
    pub fn code_floor(&self, img: &Planar) -> Option<Result<Coded, String>> {
        let (template, q) = self.codec.floor_template()?;
        Some(self.code_with(template, img, q))
    }

    fn code_with(&self, encode: Template, img: &Planar, q: f32) -> Result<Coded, String> {
        if !self.codec.accepts(q) {
            return Err(format!("{} does not take quality {q}", self.codec.name()));
        }
        let path = |name: &str| self.dir.join(name);
        let (png, ppm) = (path("src.png"), path("src.ppm"));
        let out = path(&format!("stream.{}", self.codec.stream_ext()));
        let dec = path(&format!("decoded.{}", self.codec.decoded_ext()));
        let sum = checksum(img);
        if self.sources.get() != Some(sum) {
            self.sources.set(None);
            let rgb8 = to_rgb8(img);
            rgb8.save_png(&png).map_err(|e| e.to_string())?;
            write_ppm(&rgb8, &ppm)?;
            self.sources.set(Some(sum));
        }
        for f in [&out, &dec] {
            let _ = std::fs::remove_file(f);
        }
        let fill = |t: Template| -> Vec<String> {
            t.iter()
                .map(|a| {
                    a.replace("{q}", &q.to_string())
                        .replace("{png}", &png.to_string_lossy())
                        .replace("{ppm}", &ppm.to_string_lossy())
                        .replace("{out}", &out.to_string_lossy())
                        .replace("{dec}", &dec.to_string_lossy())
                })
                .collect()
        };
        let encode_s = run(&fill(encode))?;
        let bytes = std::fs::metadata(&out)
            .map_err(|e| format!("encoder wrote no stream: {e}"))?
            .len() as usize;
        let decode_s = run(&fill(self.codec.decode_template()))?;
        let decoded = Planar::load(&dec).map_err(|e| e.to_string())?;
        Ok(Coded {
            bytes,
            decoded,
            estimated_bits: None,
            encode_s,
            decode_s,
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CRC32 of an image's size and samples, to recognise the image already written out.
fn checksum(img: &Planar) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&img.width.to_le_bytes());
    h.update(&img.height.to_le_bytes());
    let samples: Vec<u8> = img.rgb.iter().flat_map(|v| v.to_le_bytes()).collect();
    h.update(&samples);
    h.finalize()
}

/// Runs a command line, returning its wall time; a failure carries the end of its output.
fn run(args: &[String]) -> Result<f64, String> {
    let t = Instant::now();
    let out = Command::new(&args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    let seconds = t.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "{} failed ({}): {}",
            args.join(" "),
            out.status,
            tail.trim()
        ));
    }
    Ok(seconds)
}

/// Binary PPM (`P6`), the only input `cjpeg` reads.
fn write_ppm(img: &Planar, path: &std::path::Path) -> Result<(), String> {
    let mut bytes = format!("P6\n{} {}\n255\n", img.width, img.height).into_bytes();
    let n = (img.width * img.height) as usize;
    for i in 0..n {
        for c in 0..3 {
            bytes.push((img.rgb[c * n + i].clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The image as 8-bit RGB, what every tool here reads (gray repeated in three channels, no
/// alpha).
fn to_rgb8(img: &Planar) -> Planar {
    let stored = img.as_stored();
    Planar {
        channels: 3,
        bit_depth: 8,
        alpha: None,
        rgb: stored
            .rgb
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() / 255.0)
            .collect(),
        ..stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::psnr_rgb8;

    #[test]
    fn every_default_quality_is_accepted_and_templates_use_their_inputs() {
        for c in Classical::ALL {
            assert!(c.default_qualities().iter().all(|&q| c.accepts(q)), "{c:?}");
            let enc = c.encode_template().join(" ");
            assert!(enc.contains("{q}") && enc.contains("{out}"), "{enc}");
            assert!(enc.contains("{png}") || enc.contains("{ppm}"), "{enc}");
            let dec = c.decode_template().join(" ");
            assert!(dec.contains("{out}") && dec.contains("{dec}"), "{dec}");
        }
        assert!(!Classical::Jpeg.accepts(0.0) && !Classical::Hevc.accepts(30.5));
    }

    /// Runs each installed codec on a small picture; codecs whose tools are missing are
    /// skipped with a message (scripts/baselines.sh installs them).
    #[test]
    fn installed_codecs_round_trip_a_picture() {
        let img = Planar::pattern(67, 45, 3, 8, 0.3);
        for c in Classical::ALL {
            let runner = match Runner::new(c) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("skipping {c:?}: {e}");
                    continue;
                }
            };
            let q = c.default_qualities()[c.default_qualities().len() / 2];
            let coded = runner.code(&img, q).unwrap();
            assert!(coded.bytes > 0);
            assert_eq!((coded.decoded.width, coded.decoded.height), (67, 45));
            let psnr = psnr_rgb8(&img, &coded.decoded);
            assert!(psnr > 20.0, "{c:?} at {q}: {psnr} dB");
            if let Some(floor) = runner.code_floor(&img) {
                let psnr = psnr_rgb8(&img, &floor.unwrap().decoded);
                assert!(psnr > 45.0, "{c:?} floor {psnr} dB");
            }
        }
    }
}
