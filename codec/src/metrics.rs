//! Image quality metrics, by the conventions of the learned-compression literature.

use crate::image_io::Planar;

/// PSNR in dB between two images after quantizing both to 8-bit RGB (CompressAI's
/// `psnr-rgb`: MSE over all samples of the three channels, peak 255).
pub fn psnr_rgb8(a: &Planar, b: &Planar) -> f64 {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "PSNR of images of different sizes"
    );
    let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round();
    let mse: f64 = a
        .rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| f64::from(q(x) - q(y)).powi(2))
        .sum::<f64>()
        / a.rgb.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// One image channel as f64 samples on the 0–255 scale.
struct Plane {
    w: usize,
    h: usize,
    v: Vec<f64>,
}

impl Plane {
    /// 2×2 average pooling as `pytorch_msssim` does it: `avg_pool2d(2, padding = side % 2)`,
    /// so an odd side is zero-padded by one on both ends and the pads count in the average.
    fn downsample(&self) -> Plane {
        let (pw, ph) = (self.w % 2, self.h % 2);
        let (w, h) = ((self.w + 2 * pw - 2) / 2 + 1, (self.h + 2 * ph - 2) / 2 + 1);
        let at = |x: isize, y: isize| -> f64 {
            if x < 0 || y < 0 || x >= self.w as isize || y >= self.h as isize {
                0.0
            } else {
                self.v[y as usize * self.w + x as usize]
            }
        };
        let v = (0..w * h)
            .map(|i| {
                let x = (2 * (i % w)) as isize - pw as isize;
                let y = (2 * (i / w)) as isize - ph as isize;
                (at(x, y) + at(x + 1, y) + at(x, y + 1) + at(x + 1, y + 1)) / 4.0
            })
            .collect();
        Plane { w, h, v }
    }

    /// Valid-mode separable filtering with `k`.
    fn filter(&self, k: &[f64]) -> Plane {
        let n = k.len();
        let (w, h) = (self.w - n + 1, self.h - n + 1);
        let mut rows = vec![0.0; w * self.h];
        for y in 0..self.h {
            for x in 0..w {
                rows[y * w + x] = (0..n).map(|i| k[i] * self.v[y * self.w + x + i]).sum();
            }
        }
        let v = (0..w * h)
            .map(|i| (0..n).map(|j| k[j] * rows[(i / w + j) * w + i % w]).sum())
            .collect();
        Plane { w, h, v }
    }

    fn map2(&self, o: &Plane, f: impl Fn(f64, f64) -> f64) -> Plane {
        Plane {
            w: self.w,
            h: self.h,
            v: self.v.iter().zip(&o.v).map(|(&a, &b)| f(a, b)).collect(),
        }
    }
}

/// Mean SSIM and mean contrast-structure term of two planes (Gaussian window 11, σ = 1.5).
fn ssim_cs(a: &Plane, b: &Plane) -> (f64, f64) {
    let g: Vec<f64> = (0..11)
        .map(|i| (-((i as f64 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let s: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / s).collect();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mu_a, mu_b) = (a.filter(&g), b.filter(&g));
    let saa = a.map2(a, |x, y| x * y).filter(&g);
    let sbb = b.map2(b, |x, y| x * y).filter(&g);
    let sab = a.map2(b, |x, y| x * y).filter(&g);
    let n = mu_a.v.len() as f64;
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..mu_a.v.len() {
        let (ma, mb) = (mu_a.v[i], mu_b.v[i]);
        let (va, vb, cov) = (saa.v[i] - ma * ma, sbb.v[i] - mb * mb, sab.v[i] - ma * mb);
        let c = (2.0 * cov + c2) / (va + vb + c2);
        cs += c;
        ssim += c * (2.0 * ma * mb + c1) / (ma * ma + mb * mb + c1);
    }
    (ssim / n, cs / n)
}

/// MS-SSIM (Wang et al. 2003, five scales, standard weights) on 8-bit RGB, the mean of the
/// three channels' values, as `pytorch_msssim.ms_ssim(data_range=255)` computes it. `None` when
/// the shorter side is 160 pixels or less (too small for five scales of an 11-tap window).
pub fn ms_ssim_rgb8(a: &Planar, b: &Planar) -> Option<f64> {
    const WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "MS-SSIM of images of different sizes"
    );
    let (w, h) = (a.width as usize, a.height as usize);
    if w.min(h) <= 160 {
        return None;
    }
    let plane = |p: &Planar, c: usize| Plane {
        w,
        h,
        v: p.rgb[c * w * h..(c + 1) * w * h]
            .iter()
            .map(|&v| f64::from((v.clamp(0.0, 1.0) * 255.0).round()))
            .collect(),
    };
    let mut total = 0.0;
    for c in 0..3 {
        let (mut pa, mut pb) = (plane(a, c), plane(b, c));
        let mut value = 1.0;
        for (level, weight) in WEIGHTS.iter().enumerate() {
            let (ssim, cs) = ssim_cs(&pa, &pb);
            value *= if level == WEIGHTS.len() - 1 {
                ssim.max(0.0).powf(*weight)
            } else {
                cs.max(0.0).powf(*weight)
            };
            pa = pa.downsample();
            pb = pb.downsample();
        }
        total += value;
    }
    Some(total / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth picture plus uniform noise of amplitude `amp`, as stored in 8 bits.
    fn noisy(w: u32, h: u32, amp: f32, seed: u32) -> Planar {
        let n = (w * h) as usize;
        let mut s = seed;
        let rgb = (0..3 * n)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let (x, y) = ((i % n % w as usize) as f32, (i % n / w as usize) as f32);
                (0.5 + 0.3 * (x * 0.05 + (i / n) as f32).sin() * (y * 0.03).cos()
                    + amp * ((s >> 8) as f32 / 16_777_216.0 - 0.5))
                    .clamp(0.0, 1.0)
            })
            .collect();
        Planar {
            width: w,
            height: h,
            channels: 3,
            bit_depth: 8,
            rgb,
            profile: None,
            alpha: None,
        }
        .as_stored()
    }

    #[test]
    fn identical_images() {
        let a = noisy(200, 180, 0.1, 1);
        assert_eq!(psnr_rgb8(&a, &a), f64::INFINITY);
        assert!((ms_ssim_rgb8(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(
            ms_ssim_rgb8(&noisy(100, 300, 0.1, 1), &noisy(100, 300, 0.1, 1)),
            None
        );
    }

    #[test]
    fn psnr_of_a_known_error() {
        let a = noisy(16, 16, 0.0, 1);
        let mut b = a.clone();
        // Every sample off by exactly 2 levels: MSE 4, PSNR = 10·log10(255²/4).
        for v in &mut b.rgb {
            *v = ((*v * 255.0).round() + 2.0) / 255.0;
        }
        let want = 10.0 * (255.0f64 * 255.0 / 4.0).log10();
        assert!((psnr_rgb8(&a, &b) - want).abs() < 1e-9);
    }

    /// Values from `codec/tests/metrics_reference.py`, an independent float64 PyTorch
    /// implementation, on these exact image pairs (written out with `save_png`).
    #[test]
    fn agrees_with_an_independent_implementation() {
        let cases = [
            (203, 171, 0.1, 30.784412072047243, 0.9474526709643759),
            (256, 192, 0.3, 21.257145317086557, 0.7417290370195172),
            (768, 512, 0.05, 36.7631144166634, 0.9848990216562575),
        ];
        for (w, h, amp, psnr, ms) in cases {
            let (a, b) = (noisy(w, h, 0.0, 1), noisy(w, h, amp, 7));
            assert!((psnr_rgb8(&a, &b) - psnr).abs() < 1e-6, "{w}x{h}");
            assert!((ms_ssim_rgb8(&a, &b).unwrap() - ms).abs() < 1e-9, "{w}x{h}");
        }
    }

    /// The same comparison, with the reference script run now on PPM copies of the pairs
    /// (skipped, saying so, where python3 with torch is not installed; `scripts/env.sh`
    /// installs it for the tch build, so CI runs it).
    #[test]
    fn agrees_with_the_pytorch_reference_run_now() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics_reference.py");
        let dir = std::env::temp_dir().join(format!("ember-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (w, h, amp) in [(203, 171, 0.1), (320, 200, 0.3), (256, 192, 0.02)] {
            let (a, b) = (noisy(w, h, 0.0, 1), noisy(w, h, amp, 7));
            let paths = [dir.join("a.ppm"), dir.join("b.ppm")];
            for (img, p) in [&a, &b].into_iter().zip(&paths) {
                // Binary PPM (P6) by hand: `image` writes `.ppm` as PAM (P7).
                let mut ppm = format!("P6\n{w} {h}\n255\n").into_bytes();
                ppm.extend_from_slice(img.to_dynamic().to_rgb8().as_raw());
                std::fs::write(p, ppm).unwrap();
            }
            let out = match std::process::Command::new("python3")
                .arg(script)
                .args(&paths)
                .output()
            {
                Ok(out) if out.status.success() => out,
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    if err.contains("No module named 'torch'") {
                        crate::skip_test("python3 has no torch");
                        break;
                    }
                    panic!("metrics_reference.py failed: {err}");
                }
                Err(e) => {
                    crate::skip_test(format!("no python3: {e}"));
                    break;
                }
            };
            let text = String::from_utf8(out.stdout).unwrap();
            let fields: Vec<&str> = text.split_whitespace().collect();
            assert_eq!((fields[0], fields[2]), ("psnr", "msssim"), "{text}");
            let (psnr, ms): (f64, f64) = (fields[1].parse().unwrap(), fields[3].parse().unwrap());
            let (ours_psnr, ours_ms) = (psnr_rgb8(&a, &b), ms_ssim_rgb8(&a, &b).unwrap());
            assert!(
                (ours_psnr - psnr).abs() < 1e-9,
                "{w}x{h}: {ours_psnr} vs {psnr}"
            );
            assert!((ours_ms - ms).abs() < 1e-9, "{w}x{h}: {ours_ms} vs {ms}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ms_ssim_drops_with_noise() {
        let clean = noisy(256, 192, 0.0, 1);
        let light = ms_ssim_rgb8(&clean, &noisy(256, 192, 0.05, 2)).unwrap();
        let heavy = ms_ssim_rgb8(&clean, &noisy(256, 192, 0.4, 3)).unwrap();
        assert!(
            1.0 > light && light > heavy && heavy > 0.0,
            "{light} {heavy}"
        );
    }
}
