//! `ember eval`, `ember bdrate` and `ember plot` as a user runs them.

use crate::common::skip;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use codec::image_io::Planar;

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember-codec"))
        .args(args)
        .output()
        .expect("ember runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn anchors() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors/compressai-kodak");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(format!("published anchors not found at {}", dir.display()));
        None
    }
}

/// A folder `images` in `dir` holding each picture as `NAME.png`.
fn image_folder(dir: &Path, pictures: &[(&str, Planar)]) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (name, picture) in pictures {
        picture
            .save_png(&images.join(format!("{name}.png")))
            .unwrap();
    }
    images
}

/// A results file with `rates` and `psnr`, in CompressAI's format.
fn results(dir: &Path, name: &str, rates: &[f64], psnr: &[f64]) -> String {
    let path = dir.join(format!("{name}.json"));
    let json = serde_json::json!({"name": name, "results": {"bpp": rates, "psnr-rgb": psnr}});
    std::fs::write(&path, json.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn bdrate_of_a_curve_against_itself_and_a_cheaper_copy() {
    let dir = tempfile::tempdir().unwrap();
    let psnr = [28.0, 30.5, 33.0, 35.2, 37.9];
    let rates = [0.12, 0.25, 0.47, 0.8, 1.3];
    let cheaper: Vec<f64> = rates.iter().map(|r| 0.9 * r).collect();
    let a = results(dir.path(), "a", &rates, &psnr);
    let b = results(dir.path(), "b", &cheaper, &psnr);
    let far = results(
        dir.path(),
        "far",
        &[3.0, 4.0, 5.0, 6.0],
        &[50.0, 51.0, 52.0, 53.0],
    );
    let out = ok(&ember(&["bdrate", &b, "--against", &a, &b, &far]));
    assert!(
        out.contains("| a | -10.00% | -10.00% | 28.00-37.90 dB |"),
        "{out}"
    );
    assert!(out.contains("| b | +0.00% | +0.00% |"), "{out}");
    assert!(
        out.contains("| far | n/a | n/a | the curves do not overlap"),
        "{out}"
    );
    // No MS-SSIM values: the row says so rather than failing.
    let out = ember(&["bdrate", &a, "--against", &b, "--metric", "ms-ssim"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no MS-SSIM-RGB (dB) values"));
    let out = ember(&["bdrate", "/nonexistent.json", "--against", &a]);
    assert!(!out.status.success());
}

/// The published curves reproduce the BD-rates the field quotes for them (mbt2018-mean +21% and
/// BPG +22% against VTM on Kodak), so our BD-rate means what theirs means.
#[test]
fn published_curves_give_the_known_bd_rates() {
    let Some(dir) = anchors() else { return };
    let p = |n: &str| dir.join(format!("{n}.json")).to_str().unwrap().to_string();
    // The cubic BD-rate of `curve` against VTM, read from `ember bdrate`'s table.
    let against_vtm = |curve: &str| -> f64 {
        let out = ok(&ember(&["bdrate", &p(curve), "--against", &p("vtm")]));
        let row = out.lines().find(|l| l.starts_with("| VTM |")).unwrap();
        row.split('|')
            .nth(2)
            .unwrap()
            .trim()
            .trim_end_matches('%')
            .parse()
            .unwrap()
    };
    let mbt = against_vtm("compressai-mbt2018-mean_mse_cpu");
    assert!((20.0..22.5).contains(&mbt), "mbt2018-mean {mbt}%");
    let bpg = against_vtm("bpg_444_x265_ycbcr");
    assert!((19.0..25.0).contains(&bpg), "BPG {bpg}%");
}

#[test]
fn plot_writes_a_png_of_both_panels() {
    let dir = tempfile::tempdir().unwrap();
    let a = results(dir.path(), "a", &[0.1, 0.3, 0.9], &[28.0, 31.0, 35.0]);
    let png = dir.path().join("rd.png");
    let out = ember(&["plot", &a, "-o", png.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("no font for plot text") {
        skip(err.trim());
        return;
    }
    ok(&out);
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (1600, 680));
    let out = ember(&["plot", "/nonexistent.json", "-o", png.to_str().unwrap()]);
    assert!(!out.status.success());
}

/// A classical baseline over a folder with an odd-sized, a gray and a 16-bit image and one
/// unreadable file; skipped when cjpeg is not installed (scripts/baselines.sh installs it).
#[test]
fn eval_of_a_classical_codec_writes_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let images = image_folder(
        dir.path(),
        &[
            ("odd", Planar::pattern(67, 45, 3, 8, 0.0)),
            ("gray", Planar::pattern(64, 40, 1, 8, 1.0)),
            ("deep", Planar::pattern(48, 48, 3, 16, 2.0)),
        ],
    );
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let out_dir = dir.path().join("out");
    let out = ember(&[
        "eval",
        images.to_str().unwrap(),
        "--codec",
        "jpeg",
        "--quality",
        "50,90",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("cjpeg not found") {
        skip(err.trim());
        return;
    }
    ok(&out);
    assert!(
        err.contains("broken.png"),
        "no warning naming the bad file: {err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("jpeg.json")).unwrap()).unwrap();
    assert!(
        json["description"]
            .as_str()
            .unwrap()
            .contains("cjpeg -quality {q}")
    );
    let bpp = json["results"]["bpp"].as_array().unwrap();
    let psnr = json["results"]["psnr-rgb"].as_array().unwrap();
    assert_eq!(bpp.len(), 2);
    assert!(bpp[1].as_f64().unwrap() > bpp[0].as_f64().unwrap());
    assert!(psnr[1].as_f64().unwrap() > psnr[0].as_f64().unwrap());
    let csv = std::fs::read_to_string(out_dir.join("jpeg.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");

    let bad = ember(&[
        "eval",
        images.to_str().unwrap(),
        "--codec",
        "jpeg",
        "--quality",
        "0",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not take quality 0"));
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ember(&["eval", empty.to_str().unwrap(), "--codec", "jpeg"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no readable images"));
}

/// Ember itself over a small folder with the shipped model: one JSON point per quality, one
/// CSV row per image and quality with the rate estimate beside the real size, and (stderr not
/// being a terminal here) one progress line per result as it is measured.
#[test]
fn eval_of_ember_writes_json_csv_and_a_line_per_result() {
    let dir = tempfile::tempdir().unwrap();
    let images = image_folder(
        dir.path(),
        &[
            ("a", Planar::pattern(80, 48, 3, 8, 0.0)),
            ("b", Planar::pattern(48, 64, 3, 8, 1.0)),
        ],
    );
    let out_dir = dir.path().join("out");
    let out = ember(&[
        "eval",
        images.to_str().unwrap(),
        "--quality",
        "2,6",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    for line in ["1/4 a.png at 2: ", "2/4 b.png at 2: ", "4/4 b.png at 6: "] {
        assert!(err.contains(line), "no progress line {line:?}: {err}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("ember-mrc-v1.json")).unwrap())
            .unwrap();
    let results = &json["results"];
    let bpp = results["bpp"].as_array().unwrap();
    assert_eq!(bpp.len(), 2);
    assert!(bpp[1].as_f64().unwrap() > bpp[0].as_f64().unwrap());
    assert_eq!(results["estimated_bpp"].as_array().unwrap().len(), 2);
    let csv = std::fs::read_to_string(out_dir.join("ember-mrc-v1.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2, "{csv}");
}
