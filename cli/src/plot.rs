//! Rate-distortion plots as PNG: bpp across, PSNR-RGB and MS-SSIM (dB) up, one panel each.
//!
//! Text is drawn with a TrueType font read from the system at run time (DejaVu Sans by default,
//! or `$EMBER_FONT`), so no font file lives in the repository and no font library is linked.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::curves::{Curve, Metric};

const WIDTH: u32 = 1600;
const HEIGHT: u32 = 680;
const FONT: &str = "sans-serif";

/// Font files tried in order when `$EMBER_FONT` is unset.
const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the font once per process.
fn ensure_font() -> Result<(), String> {
    static FONT_STATE: OnceLock<Result<(), String>> = OnceLock::new();
    FONT_STATE
        .get_or_init(|| {
            let candidates: Vec<String> = match std::env::var("EMBER_FONT") {
                Ok(p) => vec![p],
                Err(_) => FONT_CANDIDATES.iter().map(|s| s.to_string()).collect(),
            };
            let path = candidates
                .iter()
                .find(|p| Path::new(p).is_file())
                .ok_or_else(|| {
                    format!(
                        "no font for plot text: install Debian's fonts-dejavu-core or set EMBER_FONT to a .ttf file (tried {})",
                        candidates.join(", ")
                    )
                })?;
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            // Plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TrueType font"))
        })
        .clone()
}

/// Line colours: Ember's curves first and strongest.
const PALETTE: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws `curves` (points with bpp ≤ `max_bpp`) into a PNG at `out`, written atomically.
/// Curves without a metric are left out of that panel.
pub fn rd_plot(curves: &[Curve], title: &str, max_bpp: f64, out: &Path) -> Result<(), String> {
    ensure_font()?;
    if curves.is_empty() {
        return Err("nothing to plot".into());
    }
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let root = root
            .titled(title, (FONT, 26))
            .map_err(|e| format!("plot: {e}"))?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        for (area, metric) in [(left, Metric::Psnr), (right, Metric::MsSsim)] {
            panel(&area, curves, metric, max_bpp).map_err(|e| format!("plot: {e}"))?;
        }
        root.present().map_err(|e| format!("plot: {e}"))?;
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, pixels).expect("buffer matches size");
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("cannot encode the plot: {e}"))?;
    crate::fsutil::write_atomic(out, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
/// A curve's index (its colour), the curve, and its points on one axis.
type Series<'a> = (usize, &'a Curve, Vec<(f64, f64)>);

fn panel(
    area: &Area<'_>,
    curves: &[Curve],
    metric: Metric,
    max_bpp: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let series: Vec<Series> = curves
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let p = c.points(metric)?;
            let mut pts: Vec<(f64, f64)> = p
                .rate
                .into_iter()
                .zip(p.quality)
                .filter(|&(r, q)| r <= max_bpp && q.is_finite())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!pts.is_empty()).then_some((i, c, pts))
        })
        .collect();
    let all = series.iter().flat_map(|s| s.2.iter());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo.is_finite() {
        ((lo - 0.5).floor(), (hi + 0.5).ceil())
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_bpp, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("bits per pixel")
        .y_desc(metric.label())
        .label_style((FONT, 18))
        .axis_desc_style((FONT, 20))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, curve, pts) in series {
        let color = PALETTE[i % PALETTE.len()];
        let width = if i == 0 { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))?
            .label(curve.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(width))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 17))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_both_panels() {
        if let Err(e) = ensure_font() {
            crate::skip_test(e);
            return;
        }
        let a = Curve {
            name: "a".into(),
            bpp: vec![0.1, 0.5, 1.0, 3.0],
            psnr: Some(vec![28.0, 32.0, 35.0, 45.0]),
            ms_ssim: Some(vec![0.9, 0.97, 0.99, 0.999]),
        };
        let b = Curve {
            name: "b (PSNR only)".into(),
            bpp: vec![0.2, 0.6],
            psnr: Some(vec![27.0, 31.0]),
            ms_ssim: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rd.png");
        rd_plot(&[a, b], "test", 1.5, &out).unwrap();
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // The first curve's colour appears in both halves.
        let red = image::Rgb([214, 39, 40]);
        let halves = [0..WIDTH / 2, WIDTH / 2..WIDTH];
        for xs in halves {
            assert!(
                xs.clone()
                    .any(|x| (0..HEIGHT).any(|y| *img.get_pixel(x, y) == red)),
                "a panel without the first curve"
            );
        }
    }
}
