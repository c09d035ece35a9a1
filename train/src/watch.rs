//! A guard that stops a run whose model falls apart, judged by its validation in real bytes.
//!
//! The NaN/inf guard skips single bad batches; it does not see a model that degrades while
//! every loss stays finite. That happened (train/GPU.md, "bf16 does not hold a higher learning
//! rate"): from the shipped model, bf16 at a peak learning rate of 8e-5 took the training
//! crops from 26–33 dB to 18–23 dB within 130 steps, and a run left alone would have spent
//! hours and written checkpoints of the wreck. Healthy runs move their validation far less:
//! a warm restart cost 0.17 dB at quality 4 and 0.5 dB at quality 8 mid-run (about 8% of the
//! training cost at quality 8), so a rise to [`RISE`] times the best cost seen is a collapse,
//! not noise.

use codec::model::arch;

/// How far a quality's validation cost may rise above the best seen before the run stops.
pub const RISE: f64 = 1.5;

/// The best validation cost seen at each quality, and when.
#[derive(Debug, Default)]
pub struct Watch {
    best: Vec<(f64, u64)>,
}

/// The training cost `bpp + λ(q)·255²·MSE` of a validation point (quality, bpp, PSNR dB).
fn cost((q, bpp, psnr): (f32, f64, f64)) -> f64 {
    let mse = 10f64.powf(-psnr / 10.0);
    bpp + arch::lambda_for(q) * 255.0 * 255.0 * mse
}

impl Watch {
    /// Takes the validation at `step` (per quality: quality, bpp, PSNR dB); an error names the
    /// quality whose cost is not finite or rose to [`RISE`] times its best, and the step of
    /// that best. The first validation is the baseline.
    pub fn check(&mut self, step: u64, points: &[(f32, f64, f64)]) -> Result<(), String> {
        if self.best.is_empty() {
            self.best = vec![(f64::INFINITY, step); points.len()];
        }
        for (&point, best) in points.iter().zip(&mut self.best) {
            let (q, bpp, psnr) = point;
            let now = cost(point);
            if !now.is_finite() {
                return Err(diverged(
                    format!(
                        "at step {step} the validation at quality {q} decodes to a PSNR of {psnr} dB at {bpp:.3} bpp"
                    ),
                    best.0.is_finite().then_some(best.1),
                ));
            }
            if now > RISE * best.0 {
                return Err(diverged(
                    format!(
                        "at step {step} the validation at quality {q} costs {now:.3} (bpp + λ·255²·MSE), {ratio:.1} times its best of {b:.3} at step {at}",
                        ratio = now / best.0,
                        b = best.0,
                        at = best.1,
                    ),
                    Some(best.1),
                ));
            }
            if now < best.0 {
                *best = (now, step);
            }
        }
        Ok(())
    }
}

/// The error that stops a diverged run: `what` happened; checkpoints written after step
/// `good` (the last known good model), if known, may hold the diverged one.
pub fn diverged(what: String, good: Option<u64>) -> String {
    let since = good.map_or(String::new(), |at| {
        format!(" (those written after step {at} may hold the diverged model)")
    });
    format!(
        "training diverged: {what}; stopped without writing a checkpoint{since}. Lower --lr, or train with --precision full"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validation points of the shipped model on kodim01–03 (bpp, dB at qualities 1, 4, 8),
    /// shifted by `db`.
    fn points(db: f64) -> Vec<(f32, f64, f64)> {
        vec![
            (1.0, 0.216, 27.6 + db),
            (4.0, 0.658, 32.4 + db),
            (8.0, 1.660, 35.6 + db),
        ]
    }

    #[test]
    fn ordinary_wobble_passes_and_a_collapse_stops_the_run() {
        let mut watch = Watch::default();
        watch.check(0, &points(0.0)).unwrap();
        // Half a dB down everywhere (more than any healthy run showed) and back.
        watch.check(500, &points(-0.5)).unwrap();
        watch.check(1000, &points(0.1)).unwrap();
        // The bf16 collapse: ten dB down.
        let err = watch.check(1500, &points(-10.0)).unwrap_err();
        assert!(err.contains("diverged"), "{err}");
        assert!(err.contains("at step 1500"), "{err}");
        // The best was the step-1000 validation, which the message names.
        assert!(
            err.contains("best of") && err.contains("at step 1000"),
            "{err}"
        );
    }

    #[test]
    fn the_threshold_is_relative_to_the_best_not_the_first() {
        let mut watch = Watch::default();
        // A run from random weights starts far worse than it ends.
        watch.check(0, &points(-15.0)).unwrap();
        watch.check(500, &points(0.0)).unwrap();
        // Back to where it started is a collapse from where it got to.
        assert!(watch.check(1000, &points(-15.0)).is_err());
    }

    #[test]
    fn a_reconstruction_without_a_psnr_is_a_collapse() {
        // A wrecked model decodes to NaN pixels: NaN compares false with any threshold.
        let mut watch = Watch::default();
        watch.check(0, &points(0.0)).unwrap();
        let mut wrecked = points(0.0);
        wrecked[1].2 = f64::NAN;
        let err = watch.check(1, &wrecked).unwrap_err();
        assert!(err.contains("quality 4 decodes to a PSNR of NaN"), "{err}");
    }

    #[test]
    fn a_baseline_without_a_psnr_is_a_collapse_too() {
        // A NaN baseline would compare false with everything after it and silence the watch.
        let mut wrecked = points(0.0);
        wrecked[0].2 = f64::NAN;
        let err = Watch::default().check(0, &wrecked).unwrap_err();
        assert!(err.contains("quality 1 decodes to a PSNR of NaN"), "{err}");
    }

    #[test]
    fn cost_is_the_training_loss_of_the_point() {
        // 30 dB is an MSE of 1e-3 on [0, 1]; quality 1's λ is 0.0018.
        let c = cost((1.0, 0.25, 30.0));
        assert!((c - (0.25 + 0.0018 * 65025.0 * 1e-3)).abs() < 1e-9, "{c}");
    }
}
