//! The `ember` commands that code images, as `ember-codec` runs them: `encode`, `decode`,
//! `eval` and `bench codec`. The arguments are the `cli` crate's, which also runs the commands
//! that need no model; `ember` hands the others here with their arguments unchanged.
//!
//! Every failure is one line on stderr (`ember: error: …`) and a non-zero exit code; nothing
//! in here panics on bad input.

pub mod batch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::backend::{self as backends, BackendKind, Job};
use crate::bitstream;
use crate::compress::Codec;
use crate::eval::classical::{Classical, Runner};
use crate::image_io::Planar;
use crate::weights::ModelFile;
use crate::{rate, refine};
use batch::Item;
use cli::{BenchTarget, Cli, Command, EvalCodec, MAX_STREAM_BYTES};

/// The whole program: every `ember` command, in this process.
pub fn main() -> ExitCode {
    let cli: Cli = cli::args::parse_or_exit("ember");
    cli::finish(match cli::run_without_model(&cli.command) {
        Some(result) => result,
        None => run(cli.command),
    })
}

fn classical(codec: EvalCodec) -> Option<Classical> {
    match codec {
        EvalCodec::Ember => None,
        EvalCodec::Jpeg => Some(Classical::Jpeg),
        EvalCodec::Webp => Some(Classical::Webp),
        EvalCodec::Avif => Some(Classical::Avif),
        EvalCodec::Jxl => Some(Classical::Jxl),
        EvalCodec::Hevc => Some(Classical::Hevc),
    }
}

/// Runs a command that needs the model.
fn run(command: Command) -> Result<(), String> {
    match command {
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
            let kind = coding_backend(backend)?;
            backends::run(kind, BenchJob { file, image, kind })?
        }
        Command::Encode {
            files,
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
            let aim = match (bpp, psnr) {
                (Some(b), _) => Aim::Bpp(b),
                (_, Some(db)) => Aim::Psnr(db),
                (None, None) => Aim::Quality(quality),
            };
            let items = batch::plan(
                &files.inputs,
                files.output.as_deref(),
                files.out_dir.as_deref(),
                &crate::image_io::EXTENSIONS,
                "ember",
            )?;
            // One input is read before the model is loaded, so a bad one fails fast.
            let first = match &items[..] {
                [one] => Some(read_image(one)?),
                _ => None,
            };
            make_dir(files.out_dir.as_deref())?;
            let file = load_model(model.as_deref())?;
            backends::run(
                coding_backend(backend)?,
                EncodeJob {
                    file,
                    items,
                    first,
                    aim,
                    refine,
                },
            )?
        }
        Command::Decode {
            files,
            backend,
            model,
        } => {
            let items = batch::plan(
                &files.inputs,
                files.output.as_deref(),
                files.out_dir.as_deref(),
                &["ember"],
                "png",
            )?;
            // One input's container is checked before the model is loaded, so a bad file
            // fails fast and clearly.
            let first = match &items[..] {
                [one] => Some(read_stream(one)?),
                _ => None,
            };
            make_dir(files.out_dir.as_deref())?;
            let file = load_model(model.as_deref())?;
            backends::run(coding_backend(backend)?, DecodeJob { file, items, first })?
        }
        Command::Eval {
            dir,
            codec,
            quality,
            model,
            output,
            backend,
            refine,
        } => match classical(codec) {
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
                let images = crate::eval::load_images(&dir)?;
                backends::run(
                    coding_backend(backend)?,
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
        Command::Info { .. }
        | Command::Bdrate { .. }
        | Command::Plot { .. }
        | Command::Bench {
            target: BenchTarget::Entropy,
            ..
        } => Err("this command needs no model; `ember` runs it".into()),
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
    let images = crate::eval::load_images(dir)?;
    let rows = crate::eval::evaluate_with(&images, &quality, |img, q| runner.code(img, q))?;
    let mut extra = serde_json::Map::new();
    let floors: Vec<f64> = images
        .iter()
        .filter_map(|(_, img)| {
            let coded = runner.code_floor(img)?;
            Some(coded.map(|c| crate::metrics::psnr_rgb8(&img.as_stored(), &c.decoded.as_stored())))
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
    let json = crate::eval::compressai_json(classical.name(), &description, &rows, extra);
    write_results(output, classical.name(), &json, &rows)
}

/// Writes `NAME.json` and `NAME.csv` into `output` and prints the table.
fn write_results(
    output: &Path,
    name: &str,
    json: &serde_json::Value,
    rows: &[crate::eval::Row],
) -> Result<(), String> {
    std::fs::create_dir_all(output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let write = |file: &str, bytes: &[u8]| {
        let path = output.join(file);
        crate::fsutil::write_atomic(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        &format!("{name}.json"),
        serde_json::to_string_pretty(json).expect("json").as_bytes(),
    )?;
    write(&format!("{name}.csv"), crate::eval::csv(rows).as_bytes())?;
    print!("{}", crate::eval::markdown_table(json));
    println!("wrote {}", output.display());
    Ok(())
}

fn pick_backend(explicit: Option<BackendKind>) -> Result<BackendKind, String> {
    explicit
        .or_else(backends::default_kind)
        .ok_or_else(|| "this binary was built without any backend".into())
}

fn load_model(explicit: Option<&Path>) -> Result<ModelFile, String> {
    let path = crate::zoo::find_model(explicit)?;
    ModelFile::load(&path).map_err(|e| e.to_string())
}

/// The backend of a coding command, after [`slow_build_notice`] if there is one.
fn coding_backend(explicit: Option<BackendKind>) -> Result<BackendKind, String> {
    let kind = pick_backend(explicit)?;
    if let Some(notice) = slow_build_notice(explicit, kind) {
        eprintln!("{notice}");
    }
    Ok(kind)
}

/// The one line a coding command prints first when it runs on ndarray because nothing faster
/// was built, as in a plain `cargo build` (LibTorch is not there by default: it needs the
/// 4.6 GB PyPI wheel that `scripts/env.sh` installs). Asked for by name, ndarray runs quietly.
pub fn slow_build_notice(explicit: Option<BackendKind>, kind: BackendKind) -> Option<&'static str> {
    (explicit.is_none() && kind == BackendKind::Ndarray).then_some(
        "ember: note: this build has only the slow pure-Rust backend (ndarray: 14 s to encode \
         a 768x512 photo where LibTorch takes 0.8 s); README's 'Building ember' says how to \
         build the fast one",
    )
}

fn make_dir(dir: Option<&Path>) -> Result<(), String> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))
        }
        None => Ok(()),
    }
}

/// Largest image file read from standard input; a file's size is bounded by its header's
/// pixel count instead ([`Planar::decode`]).
const MAX_IMAGE_BYTES: u64 = 1 << 31;

fn read_image(item: &Item) -> Result<Planar, String> {
    let bytes = item
        .source
        .read(MAX_IMAGE_BYTES)
        .map_err(|e| format!("cannot read image {}: {e}", item.source.name()))?;
    Planar::decode(&item.source.name(), &bytes).map_err(|e| e.to_string())
}

/// A stream's bytes, its container checked.
fn read_stream(item: &Item) -> Result<Vec<u8>, String> {
    let bytes = item
        .source
        .read(MAX_STREAM_BYTES)
        .map_err(|e| cli::stream_read_error(&item.source.name(), &e))?;
    bitstream::read(&bytes).map_err(|e| format!("{}: {e}", item.source.name()))?;
    Ok(bytes)
}

/// What `ember encode` aims at.
#[derive(Clone, Copy)]
enum Aim {
    Quality(f32),
    /// The highest quality whose file has at most this many bits per pixel.
    Bpp(f64),
    /// The lowest quality that decodes to at least this PSNR.
    Psnr(f64),
}

struct EncodeJob {
    file: ModelFile,
    items: Vec<Item>,
    /// The image of the single item, already read.
    first: Option<Planar>,
    aim: Aim,
    refine: usize,
}

impl Job for EncodeJob {
    type Output = Result<(), String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        batch::code_each(&self.items, self.first, read_image, |item, image| {
            let t = std::time::Instant::now();
            let mut notes = Vec::new();
            let (bytes, quality) = encode(&codec, &image, self.aim, self.refine, &mut notes)
                .map_err(|e| format!("{}: {e}", item.source.name()))?;
            item.sink.write(&bytes)?;
            let pixels = f64::from(image.width) * f64::from(image.height);
            let bpp = 8.0 * bytes.len() as f64 / pixels;
            let mut extras = String::new();
            if let Some(p) = &image.profile {
                extras += &format!(", ICC profile {} bytes", p.len());
            }
            if let Some(a) = bitstream::read(&bytes).ok().and_then(|s| s.extras.alpha) {
                extras += &format!(", lossless alpha {} bytes", a.len());
            }
            notes.push(format!(
                "{}: {} bytes, {bpp:.4} bpp ({}x{}, quality {quality}{extras}) in {:.2} s",
                item.sink.name(),
                bytes.len(),
                image.width,
                image.height,
                t.elapsed().as_secs_f64()
            ));
            Ok(notes.join("\n"))
        })
    }
}

/// One image's stream and the quality it was coded at; what rate control and refinement did
/// is added to `notes`.
fn encode<B: burn::tensor::backend::Backend>(
    codec: &Codec<B>,
    image: &Planar,
    aim: Aim,
    steps: usize,
    notes: &mut Vec<String>,
) -> Result<(Vec<u8>, f32), String> {
    let say = |r: refine::Report| {
        format!(
            "refinement: cost {:.4} -> {:.4} (bpp + λ·255²·MSE) in {steps} steps{}",
            r.initial,
            r.best,
            if r.best < r.initial {
                ""
            } else {
                "; kept the unrefined latent"
            }
        )
    };
    let target = match aim {
        Aim::Quality(q) => {
            let (bytes, _, report) = codec
                .compress_refined(image, q, steps)
                .map_err(|e| e.to_string())?;
            notes.extend(report.map(say));
            return Ok((bytes, q));
        }
        // A float-to-int cast saturates, so an absurd target means "no limit".
        Aim::Bpp(b) => rate::Target::MaxBytes(
            (b * f64::from(image.width) * f64::from(image.height) / 8.0).floor() as usize,
        ),
        Aim::Psnr(db) => rate::Target::MinPsnr(db),
    };
    let fitted = codec
        .compress_within(image, target, steps)
        .map_err(|e| e.to_string())?;
    let (quality, probes) = (fitted.quality, fitted.probes);
    notes.push(match target {
        rate::Target::MaxBytes(max) => format!(
            "rate control: quality {quality} is the highest within {max} bytes ({probes} encodes)"
        ),
        rate::Target::MinPsnr(db) => format!(
            "rate control: quality {quality} is the lowest reaching {db} dB: {:.2} dB ({probes} encodes)",
            fitted.measure
        ),
    });
    if let Some((report, meets)) = fitted.refined {
        notes.push(say(report));
        if !meets {
            notes.push("refinement: its stream misses the target; kept the unrefined one".into());
        }
    }
    Ok((fitted.bytes, fitted.quality))
}

struct DecodeJob {
    file: ModelFile,
    items: Vec<Item>,
    /// The stream of the single item, already read and checked.
    first: Option<Vec<u8>>,
}

impl Job for DecodeJob {
    type Output = Result<(), String>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let codec = Codec::<B>::new(self.file, device).map_err(|e| e.to_string())?;
        batch::code_each(&self.items, self.first, read_stream, |item, bytes| {
            let t = std::time::Instant::now();
            let image = codec
                .decompress(&bytes)
                .map_err(|e| format!("{}: {e}", item.source.name()))?;
            let png = image
                .png_bytes()
                .map_err(|e| format!("cannot write {}: {e}", item.sink.name()))?;
            item.sink.write(&png)?;
            Ok(format!(
                "{}: {}x{} in {:.2} s",
                item.sink.name(),
                image.width,
                image.height,
                t.elapsed().as_secs_f64()
            ))
        })
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
        let rows = crate::eval::evaluate(&codec, &self.images, &self.quality, self.refine)?;
        let refined = match self.refine {
            0 => String::new(),
            n => format!(", latents refined for {n} steps"),
        };
        let description = format!(
            "Ember {name} (weights {hash:016x}) on {}; real bitstreams, header included{refined}",
            self.dir.display()
        );
        let json = crate::eval::compressai_json(name, &description, &rows, serde_json::Map::new());
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
            let psnr = crate::metrics::psnr_rgb8(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_default_ndarray_says_it_is_the_slow_build() {
        let notice = slow_build_notice(None, BackendKind::Ndarray).unwrap();
        assert!(!notice.contains('\n') && notice.starts_with("ember: note: "));
        assert_eq!(
            slow_build_notice(Some(BackendKind::Ndarray), BackendKind::Ndarray),
            None
        );
        assert_eq!(slow_build_notice(None, BackendKind::Tch), None);
        // The default is the fastest CPU backend built: the notice shows in a build that has
        // no other (a plain `cargo build`), never in the scripts' tch build.
        let shown = slow_build_notice(None, backends::default_kind().unwrap()).is_some();
        assert_eq!(shown, cfg!(not(any(feature = "tch", feature = "wgpu"))));
    }
}
