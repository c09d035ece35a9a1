//! Sizes of the `ember-mrc-v1` architecture. The deterministic path and the model file
//! format read them from here, so there is one source of truth.

/// Channels of the analysis/synthesis transforms.
pub const N: usize = 128;
/// Channels of the latent `y`.
pub const M: usize = 192;
/// Channels of the hyper-latent `z`.
pub const Z: usize = 128;
/// Channels of the hyper-decoder's output, shared by every slice's parameter network.
pub const HYPER: usize = 192;
/// ELIC-style uneven channel slices of `y`: small first slices, coded with little context,
/// carry most of the energy; later, larger slices lean on everything decoded before them.
pub const SLICES: [usize; 5] = [16, 16, 32, 64, 64];
/// Output channels of each slice's channel-context network.
pub const CTX: usize = 48;
/// Output channels of each slice's checkerboard spatial-context convolution.
pub const SPATIAL: usize = 48;
/// Kernel size of the spatial context (its 12 anchor taps are what a non-anchor sees).
pub const SPATIAL_K: usize = 5;
/// Hidden width of each slice's parameter-aggregation network.
pub const AGG: usize = 96;
/// Feature width of the global references' attention kernel (model 2,
/// [`super::entropy_model::Global`]): queries and keys are this many ReLU features.
pub const GLOBAL_D: usize = 32;
/// Added to the global references' normaliser, so that a query whose features are all zero
/// reads zero instead of dividing by zero.
pub const GLOBAL_EPS: f32 = 1e-6;
/// Channels one global read of slice `k` yields: the attention-weighted mean of the decoded
/// anchors' quantization residual `ŷ − μ` and of its magnitude, per channel of the slice.
pub fn global_read(k: usize) -> usize {
    2 * SLICES[k]
}
/// Global reads of slice `k`: the intra-slice one, and from the second slice on the
/// inter-slice one.
pub fn global_reads(k: usize) -> usize {
    if k > 0 { 2 } else { 1 }
}
/// Channels of slice `k`'s base, which both passes share: hyper features, and after the first
/// slice the channel context.
pub fn base_in(k: usize) -> usize {
    HYPER + if k > 0 { CTX } else { 0 }
}
/// Channels the global references add at slice `k`'s aggregation input (none in model 1).
pub fn global_in(k: usize, global: bool) -> usize {
    if global {
        global_reads(k) * global_read(k)
    } else {
        0
    }
}
/// Input channels of slice `k`'s parameter aggregation: its base, the spatial context, and in
/// model 2 the global references.
pub fn aggregate_in(k: usize, global: bool) -> usize {
    base_in(k) + SPATIAL + global_in(k, global)
}
/// Hidden width of the latent residual predictor ([`super::lrp::Lrp`]).
pub const LRP_WIDTH: usize = 128;
/// Quality levels, each with its own gain vector and rate-distortion trade-off.
pub const LEVELS: usize = 8;
/// λ of each level for the loss `λ · 255² · MSE + bpp` (CompressAI's MSE ladder).
pub const LAMBDAS: [f64; LEVELS] = [
    0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800,
];
/// Where a fractional quality `q` (clamped to `[1, LEVELS]`) falls on the ladder: the lower of
/// the two neighbouring levels (0-based) and the weight `t ∈ [0, 1]` of the upper one. Gains
/// and λ are both interpolated geometrically with these weights.
pub fn between_levels(q: f32) -> (usize, f32) {
    let q = q.clamp(1.0, LEVELS as f32) - 1.0;
    let lo = (q.floor() as usize).min(LEVELS - 2);
    (lo, q - lo as f32)
}

/// λ at a fractional quality `q ∈ [1, LEVELS]`, interpolated as the gains are
/// ([`super::Model::gain_for`]).
pub fn lambda_for(q: f32) -> f64 {
    let (lo, t) = between_levels(q);
    let t = f64::from(t);
    (LAMBDAS[lo].ln() * (1.0 - t) + LAMBDAS[lo + 1].ln() * t).exp()
}

/// Total downsampling of the latent grid; images are padded to a multiple of [`PAD_TO`].
pub const Y_STRIDE: usize = 16;
/// Padding granularity: `y` is ×16 down and `z` a further ×4.
pub const PAD_TO: usize = 64;
/// Smallest scale the Gaussian conditional uses (the first table's).
pub const SCALE_MIN: f32 = 0.11;

/// Channel offset of slice `k` within `y`.
pub fn slice_start(k: usize) -> usize {
    SLICES[..k].iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_is_the_ladder_at_whole_levels_and_between_neighbours_elsewhere() {
        for (i, &l) in LAMBDAS.iter().enumerate() {
            assert!((lambda_for(i as f32 + 1.0) - l).abs() < 1e-12 * l);
        }
        let mid = lambda_for(4.5);
        assert!((mid - (LAMBDAS[3] * LAMBDAS[4]).sqrt()).abs() < 1e-12);
        assert!((lambda_for(0.0) - LAMBDAS[0]).abs() < 1e-12);
        assert!((lambda_for(9.0) - LAMBDAS[LEVELS - 1]).abs() < 1e-12);
    }
}
