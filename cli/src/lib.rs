//! Ember's command line: the arguments of `ember`, and the commands that need no model.
//!
//! This crate has no model and no compute backend in it, on purpose. LibTorch's shared
//! libraries (and CUDA's, which LibTorch links whenever its wheel has them) are mapped when a
//! process that links them starts, whether it uses them or not: about 0.5 s and 460 MiB on this
//! project's 2-core machine. The `ember` binary built from this crate therefore answers
//! `info`, `bdrate`, `plot`, `bench entropy`, `--help` and usage errors itself, at once, and
//! hands every command that codes images to `ember-codec` (the `codec` crate), which takes the
//! same arguments.

pub mod args;
pub mod bdrate;
pub mod curves;
pub mod fsutil;
pub mod plot;
#[doc(hidden)]
pub mod testing;

#[doc(hidden)]
pub use testing::skip_test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bitstream::Payload;
use bitstream::v1::SectionKind;
use clap::{Parser, Subcommand, ValueEnum};

use bdrate::{Interpolation, bd_rate};
use curves::{Curve, Metric};

/// Largest file `ember` reads as a stream. No valid stream comes near it (2^28 pixels at
/// 16 bpp is 512 MiB); refusing larger files up front avoids a huge allocation.
pub const MAX_STREAM_BYTES: u64 = 1 << 30;

#[derive(Parser)]
#[command(name = "ember", version, about = "Ember: a learned image codec", long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `encode` and `decode` read and write.
#[derive(clap::Args)]
pub struct Files {
    /// Files to code, folders of them (not their subfolders), or - for standard input.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the output of a single input (atomically); - for standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Folder (created if missing) to write NAME.ember, or NAME.png when decoding, into for
    /// every input NAME.*.
    #[arg(short = 'd', long = "out-dir")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Compress images (PNG, JPEG, PPM; 8 or 16 bit; gray, RGB or RGBA) to .ember files.
    Encode {
        #[command(flatten)]
        files: Files,
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
    /// Decompress .ember files to PNG.
    Decode {
        #[command(flatten)]
        files: Files,
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
pub enum EvalCodec {
    Ember,
    Jpeg,
    Webp,
    Avif,
    Jxl,
    Hevc,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BenchTarget {
    /// The entropy coder alone, one core.
    Entropy,
    /// Encode and decode of a 768x512 image with the shipped model.
    Codec,
}

/// A compute backend, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// LibTorch on the CPU.
    Tch,
    /// LibTorch on the first NVIDIA GPU.
    TchCuda,
    /// Burn's CUDA backend (CubeCL).
    Cuda,
    /// Burn's WebGPU/Vulkan backend.
    Wgpu,
    /// Burn's pure-Rust CPU backend.
    Ndarray,
}

impl BackendKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tch => "tch",
            BackendKind::TchCuda => "tch-cuda",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Ndarray => "ndarray",
        }
    }
}

/// Runs `command` if it needs no model (`None` if it does): `info`, `bdrate`, `plot` and
/// `bench entropy`.
pub fn run_without_model(command: &Command) -> Option<Result<(), String>> {
    Some(match command {
        Command::Info { files } => info_all(files),
        Command::Bench {
            target: BenchTarget::Entropy,
            symbols,
            ..
        } => {
            bench_entropy(*symbols);
            Ok(())
        }
        Command::Bdrate {
            curve,
            against,
            metric,
        } => bdrate(curve, against, *metric),
        Command::Plot {
            curves,
            output,
            title,
            max_bpp,
        } => plot_curves(curves, output, title, *max_bpp),
        _ => return None,
    })
}

/// `ember info`: every file, the bad ones reported one line each.
fn info_all(files: &[PathBuf]) -> Result<(), String> {
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

fn plot_curves(curves: &[PathBuf], output: &Path, title: &str, max_bpp: f64) -> Result<(), String> {
    let curves = curves
        .iter()
        .map(|p| Curve::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    plot::rd_plot(&curves, title, max_bpp, output)?;
    println!("wrote {}", output.display());
    Ok(())
}

/// The exit status of a command's result, its error printed as one line.
pub fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ember: error: {message}");
            ExitCode::FAILURE
        }
    }
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

/// Reads a whole stream, refusing absurd sizes before allocating.
fn read_stream_file(path: &Path) -> Result<Vec<u8>, String> {
    fsutil::read_bounded(path, MAX_STREAM_BYTES)
        .map_err(|e| stream_read_error(&path.display().to_string(), &e))
}

/// The one line for a stream `name` that could not be read ([`fsutil::read_bounded`] and
/// [`fsutil::read_all_bounded`] with [`MAX_STREAM_BYTES`]), saying why a refused size is one.
pub fn stream_read_error(name: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::InvalidData => format!("{name}: {e}; no Ember stream is that large"),
        _ => format!("{name}: {e}"),
    }
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
        Some(p) => println!("colour     ICC profile {}", bitstream::icc::describe(p)),
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
