//! `ember`: encode, decode, inspect, evaluate and benchmark Ember images.
//!
//! Every failure is one line on stderr (`ember: error: …`) and a non-zero exit code; nothing
//! in here panics on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use codec::backend::{self as backends, BackendKind, Job};
use codec::bitstream::{self, SectionKind};
use codec::compress::Codec;
use codec::image_io::Planar;
use codec::weights::ModelFile;

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
        /// Compute backend for the transforms; the default is the fastest one built.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// Model file to use instead of the shipped default.
        #[arg(long)]
        model: Option<PathBuf>,
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
    /// Print the header and section sizes of .ember files, checking their integrity.
    Info {
        /// Streams to inspect.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Rate-distortion evaluation of a folder of images (bpp, PSNR, MS-SSIM), CompressAI-style JSON.
    Eval {
        /// Folder of images (for example ../shared/datasets/kodak).
        dir: PathBuf,
        /// Comma-separated quality levels.
        #[arg(long, value_delimiter = ',', default_values_t = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])]
        quality: Vec<f32>,
        /// Model file to use instead of the shipped default.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Folder for the JSON and CSV.
        #[arg(short, long, default_value = "eval-out")]
        output: PathBuf,
        /// Compute backend for the transforms.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
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

#[derive(Clone, Copy, ValueEnum)]
enum BenchTarget {
    /// The entropy coder alone, one core.
    Entropy,
    /// Encode and decode of a 768x512 image with the shipped model.
    Codec,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            backend,
            model,
        } => {
            if !(1.0..=8.0).contains(&quality) {
                return Err(format!("quality {quality} is outside 1..=8"));
            }
            let image = Planar::load(&input).map_err(|e| e.to_string())?;
            let file = load_model(model.as_deref())?;
            let t = std::time::Instant::now();
            let bytes = backends::run(
                pick_backend(backend)?,
                EncodeJob {
                    file,
                    image: image.clone(),
                    quality,
                },
            )??;
            codec::fsutil::write_atomic(&output, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            let bpp = 8.0 * bytes.len() as f64 / (f64::from(image.width) * f64::from(image.height));
            println!(
                "{}: {} bytes, {bpp:.4} bpp ({}x{}, quality {quality}) in {:.2} s",
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
            quality,
            model,
            output,
            backend,
        } => {
            if let Some(q) = quality.iter().find(|q| !(1.0..=8.0).contains(*q)) {
                return Err(format!("quality {q} is outside 1..=8"));
            }
            let file = load_model(model.as_deref())?;
            backends::run(
                pick_backend(backend)?,
                EvalJob {
                    file,
                    dir,
                    quality,
                    output,
                },
            )?
        }
    }
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

struct EncodeJob {
    file: ModelFile,
    image: Planar,
    quality: f32,
}

impl Job for EncodeJob {
    type Output = Result<Vec<u8>, String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        codec
            .compress(&self.image, self.quality)
            .map_err(|e| e.to_string())
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
    dir: PathBuf,
    quality: Vec<f32>,
    output: PathBuf,
}

impl Job for EvalJob {
    type Output = Result<(), String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let name = self.file.model.name();
        let hash = self.file.hash;
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        let rows = codec::eval::evaluate(&codec, &self.dir, &self.quality)?;
        let description = format!(
            "Ember {name} (weights {hash:016x}) on {}; real bitstreams, header included",
            self.dir.display()
        );
        let json = codec::eval::compressai_json(name, &description, &rows);
        std::fs::create_dir_all(&self.output)
            .map_err(|e| format!("cannot create {}: {e}", self.output.display()))?;
        let write = |file: &str, bytes: &[u8]| {
            codec::fsutil::write_atomic(&self.output.join(file), bytes)
                .map_err(|e| format!("cannot write {file}: {e}"))
        };
        write(
            &format!("{name}.json"),
            serde_json::to_string_pretty(&json)
                .expect("json")
                .as_bytes(),
        )?;
        write(&format!("{name}.csv"), codec::eval::csv(&rows).as_bytes())?;
        let r = &json["results"];
        println!("| quality | bpp | estimated bpp | PSNR-RGB dB | MS-SSIM | encode s | decode s |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for i in 0..self.quality.len() {
            let f = |k: &str, p: usize| {
                r[k][i]
                    .as_f64()
                    .map(|v| format!("{v:.p$}"))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r["quality"][i],
                f("bpp", 4),
                f("estimated_bpp", 4),
                f("psnr-rgb", 2),
                f("ms-ssim-rgb", 4),
                f("encoding_time", 3),
                f("decoding_time", 3)
            );
        }
        println!("wrote {}", self.output.display());
        Ok(())
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
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!("{}: is a directory", path.display()));
    }
    if meta.len() > MAX_STREAM_BYTES {
        return Err(format!(
            "{}: {} bytes is larger than any Ember stream can be",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
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
    println!("format     Ember v{}", bitstream::VERSION);
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
    println!("padding    right {}, bottom {}", h.pad_right, h.pad_bottom);
    println!("crc32      {:08x} (ok)", s.crc);
    println!("sections   {}", s.sections.len());
    for sec in &s.sections {
        let name = match sec.kind {
            SectionKind::Hyper => "hyper-latent".to_string(),
            SectionKind::Anchors => format!("slice {} anchors", sec.index),
            SectionKind::NonAnchors => format!("slice {} non-anchors", sec.index),
        };
        println!("  {name:<24} {:>10} bytes", sec.data.len());
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
