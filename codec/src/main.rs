//! `ember`: encode, decode, inspect, evaluate and benchmark Ember images.
//!
//! Every failure is one line on stderr (`ember: error: …`) and a non-zero exit code; nothing
//! in here panics on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use codec::backend::{self as backends, BackendKind, Job};
use codec::bitstream::v1::SectionKind;
use codec::bitstream::{self, Payload};
use codec::compress::Codec;
use codec::eval::bdrate::{Interpolation, bd_rate};
use codec::eval::classical::{Classical, Runner};
use codec::eval::curves::{Curve, Metric};
use codec::image_io::Planar;
use codec::weights::ModelFile;
use codec::{rate, refine};

/// Largest file `ember` reads as a stream. No valid stream comes near it (2^28 pixels at
/// 16 bpp is 512 MiB); refusing larger files up front avoids a huge allocation.
const MAX_STREAM_BYTES: u64 = 1 << 30;

#[derive(Parser)]
#[command(name = "ember", version, about = "Ember: a learned image codec", long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress an image (PNG, JPEG, PPM; 8 or 16 bit; gray, RGB or RGBA) to an .ember file.
    Encode {
        /// Image to compress.
        input: PathBuf,
        /// Where to write the .ember stream (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Quality from 1 (smallest files) to 8 (best); fractional values pick rates in between.
        #[arg(short, long, default_value_t = 4.0)]
        quality: f32,
        /// Instead of --quality: the highest quality (in 1/256 steps) whose whole file is at
        /// most this many bits per pixel, i.e. at most bpp × width × height / 8 bytes. Found by
        /// entropy-coding candidate qualities (about ten; the analysis transform runs once).
        #[arg(long, conflicts_with = "quality")]
        bpp: Option<f64>,
        /// Instead of --quality: the lowest quality (in 1/256 steps) whose decoded image reaches
        /// this PSNR in dB (8-bit RGB, as `ember eval` measures it), i.e. the smallest file that
        /// does. Found like --bpp, each candidate also decoded (about ten; a few seconds).
        #[arg(long, conflicts_with_all = ["quality", "bpp"])]
        psnr: Option<f64>,
        /// Compute backend for the transforms; the default is the fastest one built.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// Model file to use instead of the shipped default.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Steps of encoder-side latent refinement (0: off): a lower rate-distortion cost for the
        /// same decoder; each step costs about two decodes of compute; memory ~2 GB per Mpixel.
        #[arg(long, default_value_t = 0)]
        refine: usize,
    },
    /// Decompress an .ember file to PNG.
    Decode {
        /// Stream to decompress.
        input: PathBuf,
        /// Where to write the PNG (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Compute backend for the synthesis transform; the default is the fastest one built.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// Model file to use instead of the shipped default.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Print the header and payload size of .ember files, checking their integrity.
    Info {
        /// Streams to inspect.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Rate-distortion evaluation of a folder of images (bpp, PSNR, MS-SSIM), CompressAI-style JSON.
    Eval {
        /// Folder of images (for example ../shared/datasets/kodak).
        dir: PathBuf,
        /// Codec to measure: Ember, or a classical baseline through Debian's tools.
        #[arg(long, value_enum, default_value_t = EvalCodec::Ember)]
        codec: EvalCodec,
        /// Comma-separated quality settings in the codec's own scale (Ember: 1-8, default all
        /// eight; the baselines default to settings spanning about 0.1-2 bpp on Kodak).
        #[arg(long, value_delimiter = ',')]
        quality: Vec<f32>,
        /// Model file to use instead of the shipped default (Ember only).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Folder for the JSON and CSV, named after the codec.
        #[arg(short, long, default_value = "eval-out")]
        output: PathBuf,
        /// Compute backend for the transforms (Ember only).
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// Steps of encoder-side latent refinement (Ember only; 0: off), as for `encode`.
        #[arg(long, default_value_t = 0)]
        refine: usize,
    },
    /// Bjøntegaard delta rate of a curve (a results JSON file) against one or more anchors.
    Bdrate {
        /// The curve under test, e.g. eval-out/ember-mrc-v1.json.
        curve: PathBuf,
        /// Anchor curves, e.g. ../shared/anchors/compressai-kodak/vtm.json.
        #[arg(long, required = true, num_args = 1..)]
        against: Vec<PathBuf>,
        /// Distortion axis.
        #[arg(long, value_enum, default_value_t = Metric::Psnr)]
        metric: Metric,
    },
    /// Rate-distortion plot (PSNR and MS-SSIM panels) of results JSON files, as PNG.
    Plot {
        /// Curves to draw; the first is drawn strongest.
        #[arg(required = true)]
        curves: Vec<PathBuf>,
        /// PNG to write (atomically).
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value = "Kodak")]
        title: String,
        /// Right end of the bpp axis.
        #[arg(long, default_value_t = 1.6)]
        max_bpp: f64,
    },
    /// Measure speed and print a table.
    Bench {
        #[arg(value_enum)]
        target: BenchTarget,
        /// Symbols per run for the entropy benchmark.
        #[arg(long, default_value_t = 1 << 20)]
        symbols: usize,
        /// Image for the codec benchmark (default: the first Kodak image, else a synthetic 768x512).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Backend for the codec benchmark.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// Model file to use instead of the shipped default.
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EvalCodec {
    Ember,
    Jpeg,
    Webp,
    Avif,
    Jxl,
    Hevc,
}

impl EvalCodec {
    fn classical(self) -> Option<Classical> {
        match self {
            EvalCodec::Ember => None,
            EvalCodec::Jpeg => Some(Classical::Jpeg),
            EvalCodec::Webp => Some(Classical::Webp),
            EvalCodec::Avif => Some(Classical::Avif),
            EvalCodec::Jxl => Some(Classical::Jxl),
            EvalCodec::Hevc => Some(Classical::Hevc),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchTarget {
    /// The entropy coder alone, one core.
    Entropy,
    /// Encode and decode of a 768x512 image with the shipped model.
    Codec,
}

fn main() -> ExitCode {
    let cli: Cli = codec::args::parse_or_exit("ember");
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ember: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Info { files } => {
            let mut failures = 0;
            for (i, f) in files.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                if let Err(e) = info(f) {
                    if files.len() == 1 {
                        return Err(e);
                    }
                    // Report every bad file, then fail once at the end.
                    eprintln!("ember: error: {e}");
                    failures += 1;
                }
            }
            match failures {
                0 => Ok(()),
                n => Err(format!(
                    "{n} of {} files are not valid Ember streams",
                    files.len()
                )),
            }
        }
        Command::Bench {
            target: BenchTarget::Entropy,
            symbols,
            ..
        } => {
            bench_entropy(symbols);
            Ok(())
        }
        Command::Bench {
            target: BenchTarget::Codec,
            image,
            backend,
            model,
            ..
        } => {
            let image = match image {
                Some(p) => Planar::load(&p).map_err(|e| e.to_string())?,
                None => default_bench_image()?,
            };
            let file = load_model(model.as_deref())?;
            let kind = pick_backend(backend)?;
            backends::run(kind, BenchJob { file, image, kind })?
        }
        Command::Encode {
            input,
            output,
            quality,
            bpp,
            psnr,
            backend,
            model,
            refine,
        } => {
            if !(1.0..=8.0).contains(&quality) {
                return Err(format!("quality {quality} is outside 1..=8"));
            }
            for (flag, value) in [("bpp", bpp), ("psnr", psnr)] {
                if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                    return Err(format!("--{flag} {v} must be a positive number"));
                }
            }
            let image = Planar::load(&input).map_err(|e| e.to_string())?;
            let pixels = f64::from(image.width) * f64::from(image.height);
            let target = match (bpp, psnr) {
                // A float-to-int cast saturates, so an absurd target means "no limit".
                (Some(b), _) => {
                    Target::Within(rate::Target::MaxBytes((b * pixels / 8.0).floor() as usize))
                }
                (_, Some(db)) => Target::Within(rate::Target::MinPsnr(db)),
                (None, None) => Target::Quality(quality),
            };
            let file = load_model(model.as_deref())?;
            let t = std::time::Instant::now();
            let (bytes, quality) = backends::run(
                pick_backend(backend)?,
                EncodeJob {
                    file,
                    image: image.clone(),
                    target,
                    refine,
                },
            )??;
            codec::fsutil::write_atomic(&output, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            let bpp = 8.0 * bytes.len() as f64 / pixels;
            let mut extras = String::new();
            if let Some(p) = &image.profile {
                extras += &format!(", ICC profile {} bytes", p.len());
            }
            if let Some(a) = bitstream::read(&bytes).ok().and_then(|s| s.extras.alpha) {
                extras += &format!(", lossless alpha {} bytes", a.len());
            }
            println!(
                "{}: {} bytes, {bpp:.4} bpp ({}x{}, quality {quality}{extras}) in {:.2} s",
                output.display(),
                bytes.len(),
                image.width,
                image.height,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Decode {
            input,
            output,
            backend,
            model,
        } => {
            let bytes = read_stream_file(&input)?;
            // Check the container before loading a model, so a bad file fails fast and clearly.
            bitstream::read(&bytes).map_err(|e| format!("{}: {e}", input.display()))?;
            let file = load_model(model.as_deref())?;
            let t = std::time::Instant::now();
            let image = backends::run(pick_backend(backend)?, DecodeJob { file, bytes })
                .and_then(|r| r.map_err(|e| format!("{}: {e}", input.display())))?;
            image.save_png(&output).map_err(|e| e.to_string())?;
            println!(
                "{}: {}x{} in {:.2} s",
                output.display(),
                image.width,
                image.height,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Eval {
            dir,
            codec,
            quality,
            model,
            output,
            backend,
            refine,
        } => match codec.classical() {
            Some(_) if refine > 0 => Err("--refine applies to Ember only".into()),
            Some(classical) => eval_classical(classical, &dir, quality, &output),
            None => {
                let quality = if quality.is_empty() {
                    (1..=8).map(|q| q as f32).collect()
                } else {
                    quality
                };
                if let Some(q) = quality.iter().find(|q| !(1.0..=8.0).contains(*q)) {
                    return Err(format!("quality {q} is outside 1..=8"));
                }
                let file = load_model(model.as_deref())?;
                let images = codec::eval::load_images(&dir)?;
                backends::run(
                    pick_backend(backend)?,
                    EvalJob {
                        file,
                        images,
                        dir,
                        quality,
                        output,
                        refine,
                    },
                )?
            }
        },
        Command::Bdrate {
            curve,
            against,
            metric,
        } => bdrate(&curve, &against, metric),
        Command::Plot {
            curves,
            output,
            title,
            max_bpp,
        } => {
            let curves = curves
                .iter()
                .map(|p| Curve::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            codec::eval::plot::rd_plot(&curves, &title, max_bpp, &output)?;
            println!("wrote {}", output.display());
            Ok(())
        }
    }
}

fn eval_classical(
    classical: Classical,
    dir: &Path,
    quality: Vec<f32>,
    output: &Path,
) -> Result<(), String> {
    let quality = if quality.is_empty() {
        classical.default_qualities().to_vec()
    } else {
        quality
    };
    if let Some(q) = quality.iter().find(|&&q| !classical.accepts(q)) {
        return Err(format!("{} does not take quality {q}", classical.name()));
    }
    let runner = Runner::new(classical)?;
    let images = codec::eval::load_images(dir)?;
    let rows = codec::eval::evaluate_with(&images, &quality, |img, q| runner.code(img, q))?;
    let mut extra = serde_json::Map::new();
    let floors: Vec<f64> = images
        .iter()
        .filter_map(|(_, img)| {
            let coded = runner.code_floor(img)?;
            Some(coded.map(|c| codec::metrics::psnr_rgb8(&img.as_stored(), &c.decoded.as_stored())))
        })
        .collect::<Result<_, _>>()?;
    if !floors.is_empty() {
        let floor = floors.iter().sum::<f64>() / floors.len() as f64;
        println!("RGB<->YUV conversion floor: {floor:.2} dB PSNR-RGB");
        extra.insert("conversion_floor_psnr_rgb".into(), floor.into());
    }
    let description = format!(
        "{} on {}; {}",
        classical.name(),
        dir.display(),
        classical.describe()
    );
    let json = codec::eval::compressai_json(classical.name(), &description, &rows, extra);
    write_results(output, classical.name(), &json, &rows)
}

/// Writes `NAME.json` and `NAME.csv` into `output` and prints the table.
fn write_results(
    output: &Path,
    name: &str,
    json: &serde_json::Value,
    rows: &[codec::eval::Row],
) -> Result<(), String> {
    std::fs::create_dir_all(output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let write = |file: &str, bytes: &[u8]| {
        codec::fsutil::write_atomic(&output.join(file), bytes)
            .map_err(|e| format!("cannot write {file}: {e}"))
    };
    write(
        &format!("{name}.json"),
        serde_json::to_string_pretty(json).expect("json").as_bytes(),
    )?;
    write(&format!("{name}.csv"), codec::eval::csv(rows).as_bytes())?;
    print!("{}", codec::eval::markdown_table(json));
    println!("wrote {}", output.display());
    Ok(())
}

/// Below this quality overlap a BD-rate extrapolates more than it measures; say so instead.
const MIN_OVERLAP_DB: f64 = 1.0;

/// Rounds to two decimals without a negative zero, so identical curves print "+0.00%".
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0 + 0.0
}

/// Prints one table row per anchor; an anchor that cannot be compared (no such metric, no
/// overlap) gets its reason in the row, and only unreadable files are errors.
fn bdrate(curve: &Path, anchors: &[PathBuf], metric: Metric) -> Result<(), String> {
    let test = Curve::load(curve)?;
    let test_pts = test
        .points(metric)
        .ok_or_else(|| format!("{} has no {} values", test.name, metric.label()))?;
    println!("BD-rate of {} on {}:", test.name, metric.label());
    println!();
    println!("| anchor | BD-rate (cubic) | BD-rate (pchip) | overlap |");
    println!("|---|---:|---:|---|");
    for path in anchors {
        let anchor = Curve::load(path)?;
        let row = anchor
            .points(metric)
            .ok_or_else(|| format!("no {} values", metric.label()))
            .and_then(|a| {
                Ok((
                    bd_rate(&a, &test_pts, Interpolation::Cubic)?,
                    bd_rate(&a, &test_pts, Interpolation::Pchip)?,
                ))
            });
        match row {
            Ok((cubic, _)) if cubic.quality_hi - cubic.quality_lo < MIN_OVERLAP_DB => println!(
                "| {} | n/a | n/a | the curves overlap over only {:.2} dB ({:.2}-{:.2} dB) |",
                anchor.name,
                cubic.quality_hi - cubic.quality_lo,
                cubic.quality_lo,
                cubic.quality_hi
            ),
            Ok((cubic, pchip)) => println!(
                "| {} | {:+.2}% | {:+.2}% | {:.2}-{:.2} dB |",
                anchor.name,
                round2(cubic.percent),
                round2(pchip.percent),
                cubic.quality_lo,
                cubic.quality_hi
            ),
            Err(e) => println!("| {} | n/a | n/a | {e} |", anchor.name),
        }
    }
    Ok(())
}

fn pick_backend(explicit: Option<BackendKind>) -> Result<BackendKind, String> {
    explicit
        .or_else(BackendKind::default_kind)
        .ok_or_else(|| "this binary was built without any backend".into())
}

fn load_model(explicit: Option<&Path>) -> Result<ModelFile, String> {
    let path = codec::zoo::find_model(explicit)?;
    ModelFile::load(&path).map_err(|e| e.to_string())
}

/// What `ember encode` aims at.
enum Target {
    Quality(f32),
    /// The quality that meets a size or PSNR target.
    Within(rate::Target),
}

struct EncodeJob {
    file: ModelFile,
    image: Planar,
    target: Target,
    refine: usize,
}

impl Job for EncodeJob {
    /// The stream and the quality it was coded at.
    type Output = Result<(Vec<u8>, f32), String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        let say = |r: refine::Report| {
            println!(
                "refinement: cost {:.4} -> {:.4} (bpp + λ·255²·MSE) in {} steps{}",
                r.initial,
                r.best,
                self.refine,
                if r.best < r.initial {
                    ""
                } else {
                    "; kept the unrefined latent"
                }
            )
        };
        match self.target {
            Target::Quality(q) => {
                let (bytes, _, report) = codec
                    .compress_refined(&self.image, q, self.refine)
                    .map_err(|e| e.to_string())?;
                if let Some(report) = report {
                    say(report);
                }
                Ok((bytes, q))
            }
            Target::Within(target) => {
                let fitted = codec
                    .compress_within(&self.image, target, self.refine)
                    .map_err(|e| e.to_string())?;
                let (quality, probes) = (fitted.quality, fitted.probes);
                match target {
                    rate::Target::MaxBytes(max) => println!(
                        "rate control: quality {quality} is the highest within {max} bytes ({probes} encodes)"
                    ),
                    rate::Target::MinPsnr(db) => println!(
                        "rate control: quality {quality} is the lowest reaching {db} dB: {:.2} dB ({probes} encodes)",
                        fitted.measure
                    ),
                }
                if let Some((report, meets)) = fitted.refined {
                    say(report);
                    if !meets {
                        println!(
                            "refinement: its stream misses the target; kept the unrefined one"
                        );
                    }
                }
                Ok((fitted.bytes, fitted.quality))
            }
        }
    }
}

struct DecodeJob {
    file: ModelFile,
    bytes: Vec<u8>,
}

impl Job for DecodeJob {
    type Output = Result<Planar, String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        codec.decompress(&self.bytes).map_err(|e| e.to_string())
    }
}

/// The first Kodak image if the shared data is present, else a synthetic 768x512 picture.
fn default_bench_image() -> Result<Planar, String> {
    let kodak =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/kodak/kodim01.png");
    if kodak.is_file() {
        return Planar::load(&kodak).map_err(|e| e.to_string());
    }
    Ok(Planar::pattern(768, 512, 3, 8, 0.0))
}

/// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

struct EvalJob {
    file: ModelFile,
    images: Vec<(PathBuf, Planar)>,
    dir: PathBuf,
    quality: Vec<f32>,
    output: PathBuf,
    refine: usize,
}

impl Job for EvalJob {
    type Output = Result<(), String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let name = self.file.model.name();
        let hash = self.file.hash;
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        let rows = codec::eval::evaluate(&codec, &self.images, &self.quality, self.refine)?;
        let refined = match self.refine {
            0 => String::new(),
            n => format!(", latents refined for {n} steps"),
        };
        let description = format!(
            "Ember {name} (weights {hash:016x}) on {}; real bitstreams, header included{refined}",
            self.dir.display()
        );
        let json = codec::eval::compressai_json(name, &description, &rows, serde_json::Map::new());
        write_results(&self.output, name, &json, &rows)
    }
}

struct BenchJob {
    file: ModelFile,
    image: Planar,
    kind: BackendKind,
}

impl Job for BenchJob {
    type Output = Result<(), String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let t = std::time::Instant::now();
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        let load = t.elapsed().as_secs_f64();
        let threads = rayon::current_num_threads();
        println!(
            "codec: {}x{} image, backend {}, {threads} threads, model load {load:.2} s, best of 4 runs",
            self.image.width,
            self.image.height,
            self.kind.name()
        );
        println!("| quality | bytes | bpp    | PSNR dB | encode s | decode s |");
        println!("|---------|-------|--------|---------|----------|----------|");
        for q in [1.0f32, 4.0, 8.0] {
            let (mut enc, mut dec) = (f64::INFINITY, f64::INFINITY);
            let mut bytes = Vec::new();
            let mut rec = None;
            for _ in 0..4 {
                let t = std::time::Instant::now();
                bytes = codec.compress(&self.image, q).map_err(|e| e.to_string())?;
                enc = enc.min(t.elapsed().as_secs_f64());
                let t = std::time::Instant::now();
                rec = Some(codec.decompress(&bytes).map_err(|e| e.to_string())?);
                dec = dec.min(t.elapsed().as_secs_f64());
            }
            let psnr = codec::metrics::psnr_rgb8(
                &self.image,
                rec.as_ref().expect("decoded at least once"),
            );
            let bpp = 8.0 * bytes.len() as f64 / f64::from(self.image.width * self.image.height);
            println!(
                "| {q:>7} | {:>5} | {bpp:>6.4} | {psnr:>7.2} | {enc:>8.3} | {dec:>8.3} |",
                bytes.len()
            );
        }
        if let Some(m) = peak_rss_mib() {
            println!("peak resident memory: {m:.0} MiB");
        }
        Ok(())
    }
}

/// Reads a whole stream, refusing absurd sizes before allocating.
fn read_stream_file(path: &Path) -> Result<Vec<u8>, String> {
    codec::fsutil::read_bounded(path, MAX_STREAM_BYTES).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => {
            format!("{}: {e}; no Ember stream is that large", path.display())
        }
        _ => format!("{}: {e}", path.display()),
    })
}

fn info(path: &Path) -> Result<(), String> {
    let bytes = read_stream_file(path)?;
    let s = bitstream::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let h = &s.header;
    let pixels = f64::from(h.width) * f64::from(h.height);
    println!(
        "file       {} ({} bytes, {:.4} bpp)",
        path.display(),
        bytes.len(),
        8.0 * bytes.len() as f64 / pixels
    );
    println!("format     Ember v{}", s.version);
    println!(
        "model      {} (id {}), weights {:016x}",
        h.model.name(),
        h.model as u16,
        h.weights_hash
    );
    println!(
        "image      {}x{}, {} channel{}, {}-bit",
        h.width,
        h.height,
        h.channels,
        if h.channels == 1 { "" } else { "s" },
        h.bit_depth
    );
    println!("quality    {:.3}", f64::from(h.quality_q8) / 256.0);
    match s.extras.profile {
        Some(p) => println!("colour     ICC profile {}", codec::icc::describe(p)),
        None => println!("colour     sRGB (no profile)"),
    }
    match s.extras.alpha {
        Some(a) => println!("alpha      lossless, {} bytes (Brotli)", a.len()),
        None => println!("alpha      none (opaque)"),
    }
    println!("crc32      {:08x} (ok)", s.crc);
    match &s.payload {
        Payload::Single(data) => println!(
            "payload    {} bytes (one entropy-coded stream: hyper-latent, then each slice's anchors and non-anchors)",
            data.len()
        ),
        Payload::Sections { sections, .. } => {
            println!("sections   {}", sections.len());
            for sec in sections {
                let name = match sec.kind {
                    SectionKind::Hyper => "hyper-latent".to_string(),
                    SectionKind::Anchors => format!("slice {} anchors", sec.index),
                    SectionKind::NonAnchors => format!("slice {} non-anchors", sec.index),
                };
                println!("  {name:<24} {:>10} bytes", sec.data.len());
            }
        }
    }
    Ok(())
}

fn bench_entropy(symbols: usize) {
    let symbols = symbols.max(1);
    let (enc, dec, bits) = entropy::bench_data::throughput(symbols, 5);
    println!(
        "entropy coder: 1 thread, {symbols} synthetic latents over 64 Gaussian scale tables, best of 5"
    );
    println!("| pass   | M symbols/s | ns/symbol |");
    println!("|--------|-------------|-----------|");
    for (name, rate) in [("encode", enc), ("decode", dec)] {
        println!("| {name:<6} | {:>11.1} | {:>9.2} |", rate / 1e6, 1e9 / rate);
    }
    println!("rate: {bits:.3} bits/symbol");
}
