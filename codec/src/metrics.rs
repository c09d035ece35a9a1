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
