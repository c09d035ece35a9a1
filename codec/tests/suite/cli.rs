//! The `ember` binary as a user meets it: exit codes and one-line errors.

use std::path::Path;
use std::process::{Command, Output};

use codec::bitstream::{self, Header};
use codec::zoo::ModelId;

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember-codec"))
        .args(args)
        .output()
        .expect("ember runs")
}

/// A well-formed version 2 container (its payload is not a real entropy-coded stream).
fn stream() -> Vec<u8> {
    let header = Header {
        model: ModelId::MrcV1,
        weights_hash: 42,
        width: 17,
        height: 33,
        channels: 3,
        bit_depth: 8,
        quality_q8: 512,
    };
    bitstream::write(&header, Default::default(), &[7u8; 176]).unwrap()
}

/// A version 1 stream as Ember wrote it before version 2 (a golden conformance stream).
fn stream_v1() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/golden/v1/rgb-17x33-q4.ember");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// Writes a synthetic RGB picture to `dir/in.png` and returns its path.
fn pattern_png(dir: &Path, width: u32, height: u32, phase: f32) -> String {
    let p = dir.join("in.png");
    codec::image_io::Planar::pattern(width, height, 3, 8, phase)
        .save_png(&p)
        .unwrap();
    p.to_str().unwrap().to_string()
}

/// Exit code 1 (not a panic's 101) and exactly one line on stderr that contains `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.starts_with("ember: error: ") && err.contains(needle),
        "stderr: {err}"
    );
}

#[test]
fn info_prints_header_and_payload() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, needles) in [
        (
            "v2.ember",
            stream(),
            &[
                "Ember v2",
                "ember-mrc-v1",
                "17x33",
                "quality    2.000",
                "payload    176 bytes",
            ][..],
        ),
        (
            "v1.ember",
            stream_v1(),
            &[
                "Ember v1",
                "ember-mrc-v1",
                "17x33",
                "quality    4.000",
                "hyper-latent",
                "slice 0 anchors",
                "slice 4 non-anchors",
            ][..],
        ),
    ] {
        let f = write(dir.path(), name, &bytes);
        let out = ember(&["info", &f]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        for needle in needles {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}

#[test]
fn info_names_the_problem_of_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = stream();
    let mut flipped = good.clone();
    flipped[60] ^= 0x04;
    let mut v9 = good.clone();
    v9[4] = 9;
    let v1 = stream_v1();
    let cases: [(&str, &[u8], &str); 6] = [
        ("truncated-header", &good[..20], "truncated"),
        (
            "truncated-v1-payload",
            &v1[..v1.len() - 30],
            "runs past the end",
        ),
        ("flipped", &flipped, "checksum mismatch"),
        (
            "foreign",
            b"\x89PNG\r\n\x1a\nthis is not ember",
            "not an Ember file",
        ),
        ("empty", b"", "not an Ember file"),
        ("version", &v9, "unsupported format version 9"),
    ];
    for (name, bytes, needle) in cases {
        let f = write(dir.path(), name, bytes);
        assert_one_line_error(&ember(&["info", &f]), needle);
    }
    assert_one_line_error(
        &ember(&["info", "/definitely/not/here.ember"]),
        "No such file",
    );
    assert_one_line_error(
        &ember(&["info", dir.path().to_str().unwrap()]),
        "is a directory",
    );
}

#[test]
fn every_single_bit_flip_is_rejected_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let good = stream();
    // Exercise the binary on a sample of positions, and the library on every bit.
    for bit in 0..good.len() * 8 {
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(bitstream::read(&b).is_err(), "bit {bit} flip accepted");
        if bit % 97 == 0 {
            let f = write(dir.path(), "flip", &b);
            assert_eq!(ember(&["info", &f]).status.code(), Some(1));
        }
    }
}

#[test]
fn encode_and_decode_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing_model = dir.path().join("none.safetensors");
    let m = missing_model.to_str().unwrap();
    let img = write(dir.path(), "in.png", b"not really a png");
    assert_one_line_error(
        &ember(&["encode", "/no/such/image.png", "-o", "x.ember"]),
        "cannot read image",
    );
    assert_one_line_error(
        &ember(&["encode", &img, "-o", "x.ember", "--model", m]),
        "cannot read image",
    );
    let good = write(dir.path(), "ok.ember", &stream());
    assert_one_line_error(
        &ember(&["decode", &good, "-o", "x.png", "--model", m]),
        "cannot read model file",
    );
    let bad_model = write(dir.path(), "bad.safetensors", b"garbage");
    assert_one_line_error(
        &ember(&["decode", &good, "-o", "x.png", "--model", &bad_model]),
        "not a valid Ember model",
    );
    assert_one_line_error(
        &ember(&[
            "decode",
            &write(dir.path(), "cut.ember", &stream()[..20]),
            "-o",
            "x.png",
        ]),
        "truncated",
    );
    assert_one_line_error(
        &ember(&["encode", &img, "-o", "x.ember", "--quality", "9"]),
        "quality 9 is outside",
    );
    assert!(!dir.path().join("x.png").exists() && !dir.path().join("x.ember").exists());
}

/// `--refine` end to end with the shipped model on a small picture: the encoder says what the
/// refinement did, the stream decodes with the plain decoder; the baselines refuse it.
#[test]
fn refined_encode_decodes_as_usual() {
    let dir = tempfile::tempdir().unwrap();
    let img = &pattern_png(dir.path(), 96, 64, 0.0);
    let stream = dir.path().join("out.ember");
    let s = stream.to_str().unwrap();
    let out = ember(&["encode", img, "-o", s, "--quality", "3", "--refine", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("refinement: cost"), "{stdout}");
    decode_ok(&stream, &dir.path().join("out.png"));
    assert_one_line_error(
        &ember(&[
            "eval",
            dir.path().to_str().unwrap(),
            "--codec",
            "webp",
            "--refine",
            "2",
        ]),
        "Ember only",
    );
}

/// A photo with a Display P3 profile keeps it through encode, `info` and decode; the same
/// photo tagged sRGB codes to a stream without one (and the profile's bytes are saved).
#[test]
fn a_colour_profile_survives_encode_and_decode() {
    use codec::icc::synthetic;
    use image::ImageDecoder;
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for (name, profile, kept) in [
        ("p3", synthetic::display_p3(), true),
        ("srgb", synthetic::srgb(), false),
    ] {
        let src = dir.path().join(format!("{name}.png"));
        let picture = codec::image_io::Planar {
            profile: Some(profile.clone()),
            ..codec::image_io::Planar::pattern(64, 64, 3, 8, 0.0)
        };
        picture.save_png(&src).unwrap();
        let (bytes, stdout) = encode_ok(
            dir.path(),
            src.to_str().unwrap(),
            &format!("{name}.ember"),
            &["--quality", "2"],
        );
        assert_eq!(stdout.contains("ICC profile"), kept, "{stdout}");
        sizes.push(bytes.len());
        let stream = dir.path().join(format!("{name}.ember"));
        let out = ember(&["info", stream.to_str().unwrap()]);
        let info = String::from_utf8_lossy(&out.stdout);
        let want = if kept {
            "colour     ICC profile \"Display P3 (test)\""
        } else {
            "colour     sRGB (no profile)"
        };
        assert!(info.contains(want), "{info}");
        let png = dir.path().join(format!("{name}-out.png"));
        decode_ok(&stream, &png);
        let file = std::io::BufReader::new(std::fs::File::open(&png).unwrap());
        let mut decoder = image::codecs::png::PngDecoder::new(file).unwrap();
        let written = decoder.icc_profile().unwrap();
        assert_eq!(written, kept.then_some(profile.clone()), "{name}");
    }
    assert_eq!(sizes[0], sizes[1] + 4 + synthetic::display_p3().len());
}

/// An RGBA picture's alpha comes back exactly through encode, `info` and decode, and costs the
/// stream its packed size; an opaque alpha channel is not stored; a damaged plane is an error
/// naming it, with no image written.
#[test]
fn alpha_survives_encode_and_decode_exactly() {
    use codec::image_io::Planar;
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (64u32, 48u32);
    // A soft-edged ellipse on a clear background.
    let mask: Vec<u16> = (0..w * h)
        .map(|i| {
            let (x, y) = (f64::from(i % w) - 32.0, f64::from(i / w) - 24.0);
            let r = (x * x / 400.0 + y * y / 225.0).sqrt();
            (((1.2 - r) * 5.0).clamp(0.0, 1.0) * 255.0).round() as u16
        })
        .collect();
    let base = Planar::pattern(w, h, 3, 8, 0.0);
    let mut sizes = Vec::new();
    for (name, alpha) in [("clear", mask.clone()), ("opaque", vec![255; mask.len()])] {
        let src = dir.path().join(format!("{name}.png"));
        Planar {
            alpha: Some(alpha),
            ..base.clone()
        }
        .save_png(&src)
        .unwrap();
        let (bytes, stdout) = encode_ok(
            dir.path(),
            src.to_str().unwrap(),
            &format!("{name}.ember"),
            &["--quality", "2"],
        );
        assert_eq!(
            stdout.contains("lossless alpha"),
            name == "clear",
            "{stdout}"
        );
        sizes.push(bytes.len());
        let stream = dir.path().join(format!("{name}.ember"));
        let info = ember(&["info", stream.to_str().unwrap()]);
        let info = String::from_utf8_lossy(&info.stdout);
        let want = if name == "clear" {
            "alpha      lossless, "
        } else {
            "alpha      none (opaque)"
        };
        assert!(info.contains(want), "{info}");
        let png = dir.path().join(format!("{name}-out.png"));
        decode_ok(&stream, &png);
        let decoded = image::open(&png).unwrap();
        if name == "clear" {
            let rgba = decoded.as_rgba8().expect("an RGBA PNG");
            let back: Vec<u16> = rgba.pixels().map(|p| u16::from(p[3])).collect();
            assert_eq!(back, mask);
        } else {
            assert!(!decoded.color().has_alpha(), "{:?}", decoded.color());
        }
    }
    // The cut-out costs its plane, less what the colour under its clear pixels no longer
    // costs (the encoder fills it smoothly).
    let packed = codec::alpha::pack(&mask, w as usize, 8);
    assert!(
        sizes[0] < sizes[1] + 4 + packed.len(),
        "{sizes:?}, plane {}",
        packed.len()
    );

    // A valid plane of one row too few in an otherwise good stream: the container parses,
    // the plane does not.
    let good = std::fs::read(dir.path().join("clear.ember")).unwrap();
    let s = bitstream::read(&good).unwrap();
    let bitstream::Payload::Single(payload) = s.payload else {
        panic!("a version 2 stream")
    };
    let short = codec::alpha::pack(&mask[..((h - 1) * w) as usize], w as usize, 8);
    let extras = bitstream::Extras {
        profile: None,
        alpha: Some(&short),
    };
    let bad = bitstream::write(&s.header, extras, payload).unwrap();
    let f = dir.path().join("bad.ember");
    std::fs::write(&f, &bad).unwrap();
    let png = dir.path().join("bad.png");
    let out = ember(&["decode", f.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad alpha plane: it holds fewer samples than the image has"),
        "{err}"
    );
    assert!(!png.exists());
}

/// Runs `ember encode IMG -o DIR/NAME EXTRA…`, which must succeed; returns the stream and
/// what it printed.
fn encode_ok(dir: &Path, img: &str, name: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let out_path = dir.join(name);
    let out = ember(&[&["encode", img, "-o", out_path.to_str().unwrap()], extra].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (std::fs::read(out_path).unwrap(), stdout)
}

/// Runs `ember decode STREAM -o PNG`, which must succeed.
fn decode_ok(stream: &Path, png: &Path) {
    let out = ember(&[
        "decode",
        stream.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The quality a rate-controlled encode reports, as printed.
fn reported_quality(stdout: &str) -> &str {
    stdout
        .split("rate control: quality ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no quality reported: {stdout}"))
}

/// Every way of giving a target a nonsense value fails clearly and writes nothing.
fn assert_targets_refused(dir: &Path, img: &str, flag: &str) {
    let out = dir.join("refused.ember");
    for bad in ["0", "-1", "NaN", "inf"] {
        assert_one_line_error(
            &ember(&[
                "encode",
                img,
                "-o",
                out.to_str().unwrap(),
                &format!("--{flag}={bad}"),
            ]),
            "must be a positive number",
        );
    }
    assert!(!out.exists());
}

/// `--bpp` with the shipped model on a small picture: the stream fits, it is exactly what
/// `--quality` gives at the quality reported, and 1/256 more quality would not fit; a target
/// below the smallest stream and nonsense targets fail clearly.
#[test]
fn rate_control_picks_the_highest_quality_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let img = &pattern_png(dir.path(), 128, 96, 0.3);
    let encode = |name: &str, extra: &[&str]| encode_ok(dir.path(), img, name, extra);
    let (low, _) = encode("q1.ember", &["--quality", "1"]);
    let (high, _) = encode("q8.ember", &["--quality", "8"]);
    // A budget halfway (in bytes) between the two ends.
    let max_bytes = (low.len() + high.len()) / 2;
    let bpp = format!("{}", (max_bytes as f64 + 0.5) * 8.0 / (128.0 * 96.0));
    let (fitted, stdout) = encode("fit.ember", &["--bpp", &bpp]);
    assert!(fitted.len() <= max_bytes, "{} > {max_bytes}", fitted.len());
    let quality = reported_quality(&stdout);
    let q: f32 = quality.parse().unwrap();
    assert!(q > 1.0 && q < 8.0, "{q}");
    assert_eq!(encode("same.ember", &["--quality", quality]).0, fitted);
    let (above, _) = encode(
        "above.ember",
        &["--quality", &format!("{}", q + 1.0 / 256.0)],
    );
    assert!(above.len() > max_bytes, "{} fits too", above.len());
    // A generous budget gives quality 8's stream; one below quality 1's is refused.
    assert_eq!(encode("top.ember", &["--bpp", "64"]).0, high);
    let tiny = format!("{}", (low.len() - 1) as f64 * 8.0 / (128.0 * 96.0));
    let x = dir.path().join("x.ember");
    assert_one_line_error(
        &ember(&["encode", img, "-o", x.to_str().unwrap(), "--bpp", &tiny]),
        "the smallest (quality 1) takes",
    );
    assert!(!x.exists());
    assert_targets_refused(dir.path(), img, "bpp");
}

/// `--psnr` with the shipped model: the decoded file reaches the target (and the PSNR the
/// encoder reported, as `ember eval` would measure it), the stream is `--quality`'s at the
/// quality reported, and 1/256 less quality would miss the target; a target above quality 8
/// and nonsense targets fail clearly.
#[test]
fn rate_control_picks_the_lowest_quality_reaching_a_psnr() {
    use codec::image_io::Planar;
    use codec::metrics::psnr_rgb8;

    let dir = tempfile::tempdir().unwrap();
    let img = &pattern_png(dir.path(), 128, 96, 0.7);
    let original = Planar::load(Path::new(img)).unwrap().as_stored();
    let encode = |name: &str, extra: &[&str]| encode_ok(dir.path(), img, name, extra);
    let psnr_of = |stream: &str| {
        let png = dir.path().join(format!("{stream}.png"));
        let out = ember(&[
            "decode",
            dir.path().join(stream).to_str().unwrap(),
            "-o",
            png.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        psnr_rgb8(&original, &Planar::load(&png).unwrap().as_stored())
    };
    encode("q1.ember", &["--quality", "1"]);
    encode("q8.ember", &["--quality", "8"]);
    let (low, high) = (psnr_of("q1.ember"), psnr_of("q8.ember"));
    assert!(high > low + 1.0, "{low} .. {high} dB");
    let target = format!("{:.2}", (low + high) / 2.0);
    let (reached, stdout) = encode("psnr.ember", &["--psnr", &target]);
    let target: f64 = target.parse().unwrap();
    let measured = psnr_of("psnr.ember");
    assert!(measured >= target, "{measured} < {target}");
    assert!(
        stdout.contains(&format!("reaching {target} dB: {measured:.2} dB")),
        "{stdout}"
    );
    let quality = reported_quality(&stdout);
    let q: f32 = quality.parse().unwrap();
    assert_eq!(encode("same.ember", &["--quality", quality]).0, reached);
    encode(
        "below.ember",
        &["--quality", &format!("{}", q - 1.0 / 256.0)],
    );
    let below = psnr_of("below.ember");
    assert!(below < target, "{below} reaches {target} too");
    let x_path = dir.path().join("x.ember");
    let x = x_path.to_str().unwrap();
    let beyond = format!("{:.2}", high + 1.0);
    assert_one_line_error(
        &ember(&["encode", img, "-o", x, "--psnr", &beyond]),
        "the best (quality 8) reaches",
    );
    let both = ember(&["encode", img, "-o", x, "--psnr", "30", "--bpp", "1"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "clap refuses --psnr with --bpp"
    );
    assert!(!x_path.exists());
    assert_targets_refused(dir.path(), img, "psnr");
}

#[test]
fn bench_entropy_prints_a_table() {
    let out = ember(&["bench", "entropy", "--symbols", "20000"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("| encode |") && text.contains("| decode |"),
        "{text}"
    );
}

/// Runs `ember ARGS` with `stdin` on its standard input.
fn ember_piped(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember-codec"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ember runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Several inputs in one process: a folder's images become `-d DIR/NAME.ember`, byte for byte
/// the streams that one encode per file writes; a bad file is one line and the others go on,
/// the exit status saying that one failed; folders of streams decode to the same PNGs as
/// single decodes. `-` is standard input and `-o -` standard output, the report then going to
/// stderr.
#[test]
fn folders_and_standard_streams_code_like_single_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    for (name, w, h, phase) in [("a.png", 48, 32, 0.0), ("b.png", 40, 24, 1.5)] {
        codec::image_io::Planar::pattern(w, h, 3, 8, phase)
            .save_png(&src.join(name))
            .unwrap();
    }
    write(&src, "c.png", b"not a png");
    write(&src, "notes.txt", b"not an image either, and not an input");
    let single: Vec<Vec<u8>> = ["a", "b"]
        .iter()
        .map(|n| {
            let img = src.join(format!("{n}.png"));
            encode_ok(
                d,
                img.to_str().unwrap(),
                &format!("{n}.ember"),
                &["--quality", "2"],
            )
            .0
        })
        .collect();

    let enc = d.join("enc");
    let out = ember(&[
        "encode",
        src.to_str().unwrap(),
        "-d",
        enc.to_str().unwrap(),
        "--quality",
        "2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("ember: error: ") && lines[0].contains("c.png"),
        "{err}"
    );
    assert_eq!(lines[1], "ember: error: 1 of 3 files failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(std::fs::read(enc.join("a.ember")).unwrap(), single[0]);
    assert_eq!(std::fs::read(enc.join("b.ember")).unwrap(), single[1]);
    assert!(!enc.join("c.ember").exists());

    let dec = d.join("dec");
    let out = ember(&["decode", enc.to_str().unwrap(), "-d", dec.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in ["a", "b"] {
        let alone = d.join(format!("{n}.png"));
        decode_ok(&d.join(format!("{n}.ember")), &alone);
        assert_eq!(
            std::fs::read(dec.join(format!("{n}.png"))).unwrap(),
            std::fs::read(&alone).unwrap()
        );
    }

    let png = std::fs::read(src.join("a.png")).unwrap();
    let out = ember_piped(&["encode", "-", "-o", "-", "--quality", "2"], &png);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, single[0]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("<stdout>: "));
    let out = ember_piped(&["decode", "-", "-o", "-"], &single[0]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, std::fs::read(d.join("a.png")).unwrap());

    // Mistakes in the invocation are refused before anything is coded.
    let a = src.join("a.png");
    let a = a.to_str().unwrap();
    assert_one_line_error(&ember(&["encode", a]), "say where to write");
    assert_one_line_error(&ember(&["encode", a, a, "-o", "x.ember"]), "2 inputs");
    assert_one_line_error(
        &ember(&["encode", "-", "-d", "x"]),
        "standard input has no name",
    );
}

/// On a full disk, encode, decode and eval each fail with one line that says so, and leave no
/// file behind (the old contents of an output path would be kept).
#[test]
fn a_full_disk_fails_each_command_in_one_line_leaving_nothing() {
    let disk = match cli::testing::FullDisk::new() {
        Ok(disk) => disk,
        Err(why) => return cli::skip_test(why),
    };
    let dir = tempfile::tempdir().unwrap();
    let img = pattern_png(dir.path(), 48, 32, 0.0);
    encode_ok(dir.path(), &img, "ok.ember", &[]);
    let ok = dir.path().join("ok.ember");
    let to = |name: &str| disk.path().join(name).to_str().unwrap().to_string();
    let full = "No space left on device";
    assert_one_line_error(&ember(&["encode", &img, "-o", &to("x.ember")]), full);
    assert_one_line_error(
        &ember(&["decode", ok.to_str().unwrap(), "-o", &to("x.png")]),
        full,
    );
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(&img, images.join("a.png")).unwrap();
    // eval reports each image on stderr as it goes; its error is still one line.
    let images = images.to_str().unwrap();
    let out = ember(&["eval", images, "--quality", "1", "-o", &to("eval")]);
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ember: error: "))
        .collect();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(errors.len() == 1 && errors[0].contains(full), "{err}");
    assert_eq!(disk.leftovers(), Vec::<std::path::PathBuf>::new());
}

/// A model file cut short, one with a bit flipped in its weights, and one of another shape
/// (a tensor missing, a tensor resized) are each refused with one line: the first two by the
/// loader or by the stream's weights fingerprint, the last by the model's own check.
#[test]
fn a_damaged_or_foreign_model_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/ember-mrc-v1.safetensors");
    let bytes = std::fs::read(&shipped).unwrap();
    let img = pattern_png(dir.path(), 32, 24, 0.0);
    let (_, _) = encode_ok(dir.path(), &img, "ok.ember", &[]);
    let ok = dir.path().join("ok.ember");
    let ok = ok.to_str().unwrap();

    let cut = write(dir.path(), "cut.safetensors", &bytes[..bytes.len() / 2]);
    assert_one_line_error(
        &ember(&["decode", ok, "-o", "x.png", "--model", &cut]),
        "not a valid Ember model",
    );
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n / 2] ^= 0x10;
    let flipped = write(dir.path(), "flipped.safetensors", &flipped);
    assert_one_line_error(
        &ember(&["decode", ok, "-o", "x.png", "--model", &flipped]),
        "decode with the model that encoded it",
    );

    let mut missing = crate::common::shipped_model();
    let name = missing.tensors.keys().next().unwrap().clone();
    missing.tensors.remove(&name);
    let missing = write(dir.path(), "missing.safetensors", &missing.to_bytes());
    assert_one_line_error(
        &ember(&["encode", &img, "-o", "x.ember", "--model", &missing]),
        &name,
    );
    let mut resized = crate::common::shipped_model();
    let t = resized.tensors.values_mut().next().unwrap();
    t.shape[0] += 1;
    t.data.extend(vec![0.0; t.data.len() / (t.shape[0] - 1)]);
    let resized = write(dir.path(), "resized.safetensors", &resized.to_bytes());
    assert_one_line_error(
        &ember(&["encode", &img, "-o", "x.ember", "--model", &resized]),
        &name,
    );
    assert!(!dir.path().join("x.ember").exists() && !Path::new("x.png").exists());
}
