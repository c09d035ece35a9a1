//! `ember`: encode, decode, inspect, evaluate and benchmark Ember images.
//!
//! Every failure is one line on stderr (`ember: error: …`) and a non-zero exit code; nothing
//! in here panics on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use codec::bitstream::{self, SectionKind};

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
        backend: Option<Backend>,
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
        backend: Option<Backend>,
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
        /// Folder for the JSON, CSV and plots.
        #[arg(short, long, default_value = "eval-out")]
        output: PathBuf,
    },
    /// Measure speed and print a table.
    Bench {
        #[arg(value_enum)]
        target: BenchTarget,
        /// Symbols per run for the entropy benchmark.
        #[arg(long, default_value_t = 1 << 20)]
        symbols: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// LibTorch on the CPU.
    Tch,
    /// LibTorch on an NVIDIA GPU.
    TchCuda,
    /// Burn's CUDA backend.
    Cuda,
    /// Burn's WebGPU/Vulkan backend.
    Wgpu,
    /// Burn's pure-Rust CPU backend.
    Ndarray,
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
                n => Err(format!("{n} of {} files are not valid Ember streams", files.len())),
            }
        }
        Command::Bench { target: BenchTarget::Entropy, symbols } => {
            bench_entropy(symbols);
            Ok(())
        }
        Command::Encode { .. } | Command::Decode { .. } | Command::Eval { .. } | Command::Bench { target: BenchTarget::Codec, .. } => Err(
            "this build of ember has no trained model yet, so it cannot encode, decode or evaluate images; `ember info` and `ember bench entropy` work"
                .into(),
        ),
    }
}

/// Reads a whole stream, refusing absurd sizes before allocating.
fn read_stream_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!("{}: is a directory", path.display()));
    }
    if meta.len() > MAX_STREAM_BYTES {
        return Err(format!("{}: {} bytes is larger than any Ember stream can be", path.display(), meta.len()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn info(path: &Path) -> Result<(), String> {
    let bytes = read_stream_file(path)?;
    let s = bitstream::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let h = &s.header;
    let pixels = f64::from(h.width) * f64::from(h.height);
    println!("file       {} ({} bytes, {:.4} bpp)", path.display(), bytes.len(), 8.0 * bytes.len() as f64 / pixels);
    println!("format     Ember v{}", bitstream::VERSION);
    println!("model      {} (id {}), weights {:016x}", h.model.name(), h.model as u16, h.weights_hash);
    println!("image      {}x{}, {} channel{}, {}-bit", h.width, h.height, h.channels, if h.channels == 1 { "" } else { "s" }, h.bit_depth);
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
    println!("entropy coder: 1 thread, {symbols} synthetic latents over 64 Gaussian scale tables, best of 5");
    println!("| pass   | M symbols/s | ns/symbol |");
    println!("|--------|-------------|-----------|");
    for (name, rate) in [("encode", enc), ("decode", dec)] {
        println!("| {name:<6} | {:>11.1} | {:>9.2} |", rate / 1e6, 1e9 / rate);
    }
    println!("rate: {bits:.3} bits/symbol");
}
