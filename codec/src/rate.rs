//! Rate control: the highest quality whose stream fits a size budget.
//!
//! A stream's size grows with the quality, roughly geometrically (each of the eight levels
//! costs about 1.3–1.5 times the bits of the one below on Kodak), so the search interpolates
//! in the logarithm of the size to guess the quality that meets the budget. It runs on the
//! grid the header stores (1/256 steps, so the answer is exactly reproducible with
//! `--quality`), keeps a bracket `[fits, too big]`, and uses the Illinois variant of false
//! position so the guesses do not stall on one side. Whenever a guess fails to halve the
//! bracket, the next probe bisects: at most about twice bisection's eleven probes. On a smooth
//! geometric curve that takes 4.6 probes on average; on real Kodak images 6–16, about 10,
//! because the size is uneven at 1/256 steps and the last probes, in a narrow bracket, are
//! mostly bisection.

/// Qualities as the header stores them, in 1/256 steps: 1.0 ..= 8.0.
pub const LOWEST: u16 = 256;
pub const HIGHEST: u16 = 2048;

/// A stream that fits, at the quality that made it.
#[derive(Debug)]
pub struct Fit<T> {
    /// Quality × 256.
    pub quality_q8: u16,
    pub size: usize,
    pub stream: T,
    /// Encodes the search ran, this one included.
    pub probes: usize,
}

/// What the search found.
#[derive(Debug)]
pub enum Outcome<T> {
    Fits(Fit<T>),
    /// Even the lowest quality's stream is larger than the budget; this is its size.
    TooSmall {
        smallest: usize,
    },
}

/// The highest quality in `LOWEST ..= HIGHEST` whose stream (`probe(q)` returns its size and
/// the stream) is at most `budget` bytes, and that stream. Sizes are assumed to grow with the
/// quality; where they do not, the result still fits but a higher quality might too.
pub fn highest_fitting<T, E>(
    budget: usize,
    mut probe: impl FnMut(u16) -> Result<(usize, T), E>,
) -> Result<Outcome<T>, E> {
    // The bracket's ends in log-size relative to the budget: `≤ 0` fits, `> 0` does not.
    let excess = |size: usize| (size.max(1) as f64 / budget.max(1) as f64).ln();
    let (size, stream) = probe(LOWEST)?;
    if size > budget {
        return Ok(Outcome::TooSmall { smallest: size });
    }
    let mut best = Fit {
        quality_q8: LOWEST,
        size,
        stream,
        probes: 1,
    };
    let (top_size, top) = probe(HIGHEST)?;
    best.probes += 1;
    if top_size <= budget {
        return Ok(Outcome::Fits(Fit {
            quality_q8: HIGHEST,
            size: top_size,
            stream: top,
            probes: best.probes,
        }));
    }
    let (mut lo, mut f_lo) = (LOWEST, excess(size));
    let (mut hi, mut f_hi) = (HIGHEST, excess(top_size));
    let mut last_fit: Option<bool> = None;
    let mut bisect = false;
    while hi - lo > 1 {
        let width = hi - lo;
        let guess = if bisect {
            lo + width / 2
        } else {
            let t = -f_lo / (f_hi - f_lo);
            lo + (f64::from(width) * t).round() as u16
        }
        .clamp(lo + 1, hi - 1);
        let (size, stream) = probe(guess)?;
        best.probes += 1;
        let fits = size <= budget;
        if fits {
            (lo, f_lo) = (guess, excess(size));
            (best.quality_q8, best.size, best.stream) = (guess, size, stream);
            if last_fit == Some(true) {
                f_hi /= 2.0;
            }
        } else {
            (hi, f_hi) = (guess, excess(size));
            if last_fit == Some(false) {
                f_lo /= 2.0;
            }
        }
        last_fit = Some(fits);
        bisect = 2 * (hi - lo) > width;
    }
    Ok(Outcome::Fits(best))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search on a size curve and checks the answer against an exhaustive scan.
    fn check(budget: usize, size: impl Fn(u16) -> usize) -> usize {
        let outcome = highest_fitting::<(), ()>(budget, |q| Ok((size(q), ()))).unwrap();
        let expected = (LOWEST..=HIGHEST).rev().find(|&q| size(q) <= budget);
        match (outcome, expected) {
            (Outcome::Fits(fit), Some(q)) => {
                assert_eq!(fit.quality_q8, q, "budget {budget}");
                assert_eq!(fit.size, size(q));
                fit.probes
            }
            (Outcome::TooSmall { smallest }, None) => {
                assert_eq!(smallest, size(LOWEST));
                1
            }
            (outcome, expected) => panic!("budget {budget}: {outcome:?} vs {expected:?}"),
        }
    }

    /// Geometric growth, about what Ember's ladder gives (×12 from quality 1 to 8).
    fn geometric(q: u16) -> usize {
        (20_000.0 * (f64::from(q - LOWEST) / 1792.0 * 12f64.ln()).exp()) as usize
    }

    #[test]
    fn finds_the_highest_fitting_quality_in_few_probes() {
        let (mut worst, mut total, mut runs) = (0, 0, 0);
        for budget in (15_000..260_000).step_by(997) {
            let probes = check(budget, geometric);
            worst = worst.max(probes);
            total += probes;
            runs += 1;
        }
        let mean = total as f64 / runs as f64;
        // Measured: 4.6 on average, 14 at worst (the bound is about twice bisection's 11).
        assert!(
            mean < 5.0 && worst <= 24,
            "mean {mean}, worst {worst} probes"
        );
    }

    #[test]
    fn stays_exact_and_bounded_on_awkward_curves() {
        // Flat stretches and a jump: interpolation guesses badly, bisection must take over.
        let steps = |q: u16| 1000 + 5000 * usize::from(q > 1900) + usize::from(q) / 64;
        let linear = |q: u16| usize::from(q) * 10;
        for budget in [1000, 1020, 1030, 6000, 6031, 6100] {
            assert!(check(budget, steps) <= 24);
        }
        for budget in (2560..=20480).step_by(311) {
            assert!(check(budget, linear) <= 24);
        }
    }

    #[test]
    fn budgets_outside_the_range() {
        assert_eq!(check(100, geometric), 1); // below quality 1: one probe, then refused
        let outcome = highest_fitting::<(), ()>(usize::MAX, |q| Ok((geometric(q), ()))).unwrap();
        assert!(matches!(
            outcome,
            Outcome::Fits(Fit {
                quality_q8: HIGHEST,
                probes: 2,
                ..
            })
        ));
    }

    #[test]
    fn probe_errors_pass_through() {
        let r =
            highest_fitting::<(), &str>(1000, |q| if q > 600 { Err("boom") } else { Ok((1, ())) });
        assert_eq!(r.unwrap_err(), "boom");
    }
}
