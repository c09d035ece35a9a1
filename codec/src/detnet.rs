//! The deterministic entropy-parameter path: hyper-synthesis, channel and spatial contexts and
//! parameter aggregation, evaluated on the CPU in plain Rust.
//!
//! Encoder and decoder must derive *bit-identical* means and scales, or the decoder's tables
//! differ from the encoder's and the stream derails. Burn backends do not promise that (their
//! kernels reorder sums, fuse multiply-adds and differ between CPU and GPU). This module does:
//!
//! - only IEEE-754 operations that are correctly rounded on every platform Rust supports
//!   (`+`, `−`, `×`, `max`, `abs`), in f32, with no fused multiply-add (Rust never contracts
//!   `a * b + c`) and no transcendental functions;
//! - a fixed accumulation order for every output: bias first, then input channels, kernel rows
//!   and kernel columns in ascending order. Loops vectorize *across* output pixels, never along
//!   a sum, so SIMD width cannot change a result, and threads split output channels only.
//!
//! The result is a pure function of the weights and of ẑ/ŷ on every x86-64 and ARM64 machine,
//! for any thread count; `tests/suite/determinism.rs` and the golden streams in `testdata/` hold it to
//! that. The weights are the trained float weights as stored (f16/f32), so this path costs no
//! rate against the model as trained — the integer-network alternative (Ballé et al. 2019)
//! would have to quantize them.

use rayon::prelude::*;

use crate::model::HS_MID;
use crate::model::arch::{
    self, AGG, CTX, GLOBAL_D, GLOBAL_EPS, HYPER, SLICES, SPATIAL, SPATIAL_K, Z,
};
use crate::weights::{ModelFile, WeightsError};
use crate::zoo::ModelId;

/// A feature map `[c, h, w]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Map {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

impl Map {
    pub fn zeros(c: usize, h: usize, w: usize) -> Self {
        Self {
            c,
            h,
            w,
            data: vec![0.0; c * h * w],
        }
    }

    pub fn plane(&self, c: usize) -> &[f32] {
        &self.data[c * self.h * self.w..(c + 1) * self.h * self.w]
    }

    /// Channels `start .. start + len`.
    pub fn channels(&self, start: usize, len: usize) -> Map {
        let hw = self.h * self.w;
        Map {
            c: len,
            h: self.h,
            w: self.w,
            data: self.data[start * hw..(start + len) * hw].to_vec(),
        }
    }

    /// The values at pixel positions `pixels` (row-major indices) of every channel, as a
    /// `[c, 1, pixels.len()]` map. Per-position networks (1×1 convolutions) give the same
    /// bits on the gathered map as on the full one, at a fraction of the work.
    pub fn gather(&self, pixels: &[usize]) -> Map {
        let hw = self.h * self.w;
        let mut data = Vec::with_capacity(self.c * pixels.len());
        for ch in 0..self.c {
            let plane = &self.data[ch * hw..(ch + 1) * hw];
            data.extend(pixels.iter().map(|&p| plane[p]));
        }
        Map {
            c: self.c,
            h: 1,
            w: pixels.len(),
            data,
        }
    }

    /// Concatenation along channels.
    pub fn cat(parts: &[&Map]) -> Map {
        let (h, w) = (parts[0].h, parts[0].w);
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            assert_eq!((p.h, p.w), (h, w), "concatenated maps differ in size");
            data.extend_from_slice(&p.data);
        }
        Map {
            c: parts.iter().map(|p| p.c).sum(),
            h,
            w,
            data,
        }
    }

    fn relu(mut self) -> Map {
        for v in &mut self.data {
            *v = v.max(0.0);
        }
        self
    }
}

/// A stride-1 convolution with "same" padding: weights `[cout, cin, k, k]`, bias `[cout]`.
#[derive(Clone, Debug)]
pub struct Conv {
    cout: usize,
    cin: usize,
    k: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv {
    fn load(
        file: &ModelFile,
        prefix: &str,
        cin: usize,
        cout: usize,
        k: usize,
    ) -> Result<Self, WeightsError> {
        Ok(Self {
            cout,
            cin,
            k,
            weight: file
                .tensor(&format!("{prefix}.weight"), &[cout, cin, k, k])?
                .to_vec(),
            bias: file.tensor(&format!("{prefix}.bias"), &[cout])?.to_vec(),
        })
    }

    /// Applies the convolution. Each output channel is computed by one thread, in the fixed
    /// order described in the module documentation.
    pub fn forward(&self, x: &Map) -> Map {
        assert_eq!(
            x.c, self.cin,
            "convolution input has {} channels, expected {}",
            x.c, self.cin
        );
        let (h, w, k) = (x.h, x.w, self.k);
        let pad = k / 2;
        let mut out = Map::zeros(self.cout, h, w);
        out.data
            .par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(o, plane)| {
                plane.fill(self.bias[o]);
                for i in 0..self.cin {
                    let input = x.plane(i);
                    let taps =
                        &self.weight[(o * self.cin + i) * k * k..(o * self.cin + i + 1) * k * k];
                    for ky in 0..k {
                        for kx in 0..k {
                            let wv = taps[ky * k + kx];
                            // Output columns whose input column x + kx − pad lies inside the row.
                            let x0 = pad.saturating_sub(kx);
                            let x1 = (w + pad).saturating_sub(kx).min(w);
                            if x0 >= x1 {
                                continue;
                            }
                            for y in 0..h {
                                let iy = y + ky;
                                if iy < pad || iy - pad >= h {
                                    continue;
                                }
                                let src = &input[(iy - pad) * w + x0 + kx - pad
                                    ..(iy - pad) * w + x1 + kx - pad];
                                let dst = &mut plane[y * w + x0..y * w + x1];
                                for (d, s) in dst.iter_mut().zip(src) {
                                    *d += wv * *s;
                                }
                            }
                        }
                    }
                }
            });
        out
    }
}

/// `[4c, h, w] → [c, 2h, 2w]`, the layout of [`crate::model::layers::depth_to_space`].
pub fn depth_to_space(x: &Map) -> Map {
    let c = x.c / 4;
    let mut out = Map::zeros(c, 2 * x.h, 2 * x.w);
    for ch in 0..c {
        for i in 0..2 {
            for j in 0..2 {
                let src = x.plane(4 * ch + 2 * i + j);
                for y in 0..x.h {
                    for xx in 0..x.w {
                        out.data[(ch * 2 * x.h + 2 * y + i) * 2 * x.w + 2 * xx + j] =
                            src[y * x.w + xx];
                    }
                }
            }
        }
    }
    out
}

struct SlicePath {
    channel: Option<(Conv, Conv)>,
    spatial: Conv,
    agg: (Conv, Conv, Conv),
    /// Model 2's global references.
    global: Option<GlobalPath>,
}

/// The query and key projections of a slice's intra-slice read, and of its inter-slice one
/// (from the second slice on).
struct GlobalPath {
    intra: (Conv, Conv),
    inter: Option<(Conv, Conv)>,
}

/// The entropy-parameter networks of a model, ready to evaluate.
pub struct EntropyPath {
    hs: (Conv, Conv, Conv),
    slices: Vec<SlicePath>,
}

/// Gaussian parameters of one slice pass, `[c, h, w]` each.
pub struct Params {
    pub mean: Map,
    pub scale: Map,
}

impl EntropyPath {
    pub fn load(file: &ModelFile) -> Result<Self, WeightsError> {
        let hs = (
            Conv::load(file, "h_s.u1.conv", Z, 4 * Z, 3)?,
            Conv::load(file, "h_s.u2.conv", Z, 4 * HS_MID, 3)?,
            Conv::load(file, "h_s.c3", HS_MID, HYPER, 1)?,
        );
        let mut slices = Vec::new();
        for (k, &c) in SLICES.iter().enumerate() {
            let p = format!("slices.{k}");
            let channel = if k > 0 {
                Some((
                    Conv::load(
                        file,
                        &format!("{p}.channel.c1"),
                        arch::slice_start(k),
                        CTX,
                        1,
                    )?,
                    Conv::load(file, &format!("{p}.channel.c2"), CTX, CTX, 3)?,
                ))
            } else {
                None
            };
            let has_global = file.model == ModelId::MrcV2;
            let query_key = |name: &str, cin: usize| -> Result<(Conv, Conv), WeightsError> {
                Ok((
                    Conv::load(file, &format!("{p}.global.{name}.q"), cin, GLOBAL_D, 1)?,
                    Conv::load(file, &format!("{p}.global.{name}.k"), cin, GLOBAL_D, 1)?,
                ))
            };
            let global = if has_global {
                let intra = query_key("intra", arch::base_in(k))?;
                let inter = if k > 0 {
                    Some(query_key("inter", SLICES[k - 1])?)
                } else {
                    None
                };
                Some(GlobalPath { intra, inter })
            } else {
                None
            };
            let agg_in = arch::aggregate_in(k, has_global);
            slices.push(SlicePath {
                global,
                channel,
                spatial: Conv::load(file, &format!("{p}.spatial"), c, SPATIAL, SPATIAL_K)?,
                agg: (
                    Conv::load(file, &format!("{p}.aggregate.c1"), agg_in, AGG, 1)?,
                    Conv::load(file, &format!("{p}.aggregate.c2"), AGG, AGG, 1)?,
                    Conv::load(file, &format!("{p}.aggregate.c3"), AGG, 2 * c, 1)?,
                ),
            });
        }
        Ok(Self { hs, slices })
    }

    /// Hyper features from the decoded hyper-latent `ẑ` (`[Z, h/4, w/4]` → `[HYPER, h, w]`).
    pub fn hyper(&self, z_hat: &Map) -> Map {
        let h = depth_to_space(&self.hs.0.forward(z_hat)).relu();
        let h = depth_to_space(&self.hs.1.forward(&h)).relu();
        self.hs.2.forward(&h)
    }

    /// The inputs slice `k` shares between its two passes: hyper features and the channel
    /// context of the already decoded slices (`previous`, all channels before slice `k`).
    pub fn slice_base(&self, k: usize, hyper: &Map, previous: Option<&Map>) -> Map {
        match (&self.slices[k].channel, previous) {
            (Some((c1, c2)), Some(prev)) => {
                let ctx = c2.forward(&c1.forward(prev).relu()).relu();
                Map::cat(&[hyper, &ctx])
            }
            _ => hyper.clone(),
        }
    }

    /// The global references of slice `k` at the gathered positions `at` (the non-anchor
    /// pass's), `[reads · 2c, 1, at.len()]`, or `None` in model 1. `base` is the slice's
    /// [`slice_base`](Self::slice_base) map, `previous` the previous slice's decoded latent
    /// (from the second slice on), `anchors` the anchor positions and `residuals` the slice's
    /// symbols there (`ŷ − μ`), `[c, 1, anchors.len()]`, channel-major as the anchor pass
    /// coded them. Each read is [`attend`] with the similarity of two positions measured on
    /// `base` (intra-slice), then on `previous` (inter-slice), and the values `[ŷ − μ, |ŷ − μ|]`.
    pub fn global(
        &self,
        k: usize,
        base: &Map,
        previous: Option<&Map>,
        anchors: &[usize],
        residuals: &Map,
        at: &[usize],
    ) -> Option<Map> {
        let GlobalPath { intra, inter } = self.slices[k].global.as_ref()?;
        let mut magnitude = residuals.clone();
        for v in &mut magnitude.data {
            *v = v.abs();
        }
        let values = Map::cat(&[residuals, &magnitude]);
        let read = |(q, key): &(Conv, Conv), source: &Map| {
            let queries = q.forward(&source.gather(at)).relu();
            let keys = key.forward(&source.gather(anchors)).relu();
            attend(&queries, &keys, &values)
        };
        let mut reads = vec![read(intra, base)];
        if let (Some(inter), Some(previous)) = (inter, previous) {
            reads.push(read(inter, previous));
        }
        Some(Map::cat(&reads.iter().collect::<Vec<_>>()))
    }

    /// Spatial context of slice `k` from its decoded anchors (non-anchor positions zero).
    pub fn spatial(&self, k: usize, anchors: &Map) -> Map {
        self.slices[k].spatial.forward(anchors)
    }

    /// Channels of the references slice `k`'s anchor pass does not have yet, and gets as
    /// zeros: the spatial context, and in model 2 the global references.
    pub fn unknown_in_anchor_pass(&self, k: usize) -> usize {
        SPATIAL + arch::global_in(k, self.slices[k].global.is_some())
    }

    /// Means and scales of slice `k` from `inputs`, concatenated: its base, the spatial
    /// context and in model 2 the global references (zeros in the anchor pass). Every layer
    /// is 1×1, so the inputs may be full maps or the same positions gathered from them
    /// ([`Map::gather`]), with identical results at those positions.
    pub fn params(&self, k: usize, inputs: &[&Map]) -> Params {
        let (c1, c2, c3) = &self.slices[k].agg;
        let h = c1.forward(&Map::cat(inputs)).relu();
        let out = c3.forward(&c2.forward(&h).relu());
        let c = out.c / 2;
        let mean = out.channels(0, c);
        let mut scale = out.channels(c, c);
        for v in &mut scale.data {
            *v = v.abs().max(arch::SCALE_MIN);
        }
        Params { mean, scale }
    }
}

/// Linear attention, exactly: for non-negative `queries` (`[d, 1, m]`) and `keys` (`[d, 1,
/// n]`) and `values` (`[c, 1, n]`), output `j` at query `p` is
/// `(Σ_i q[i][p] · KV[i][j]) / (Σ_i q[i][p] · K[i] + ε)` with `KV[i][j] = Σ_a k[i][a] · v[j][a]`
/// and `K[i] = Σ_a k[i][a]`, `[c, 1, m]`. Every sum starts at zero and adds its terms in
/// ascending order of its index (`a`, the key's position, or `i`, the feature); one division
/// per output. Threads split the features `i` (for `KV`, `K`) and the queries `p`, and loops
/// vectorize across `j` only, so nothing depends on the thread count or the SIMD width.
pub fn attend(queries: &Map, keys: &Map, values: &Map) -> Map {
    let (d, n, m, c) = (keys.c, keys.w, queries.w, values.c);
    assert_eq!(queries.c, d, "queries and keys differ in features");
    assert_eq!(values.w, n, "keys and values differ in positions");
    // Values position-major, so that a key's contribution to a row of KV is one vector op.
    let mut by_position = vec![0.0f32; n * c];
    for j in 0..c {
        for (a, &v) in values.plane(j).iter().enumerate() {
            by_position[a * c + j] = v;
        }
    }
    let mut kv = vec![0.0f32; d * c];
    let mut k_sum = vec![0.0f32; d];
    kv.par_chunks_mut(c)
        .zip(k_sum.par_iter_mut())
        .enumerate()
        .for_each(|(i, (row, sum))| {
            for (a, &ka) in keys.plane(i).iter().enumerate() {
                *sum += ka;
                for (r, &v) in row.iter_mut().zip(&by_position[a * c..(a + 1) * c]) {
                    *r += ka * v;
                }
            }
        });
    let mut by_query = vec![0.0f32; m * c];
    by_query.par_chunks_mut(c).enumerate().for_each(|(p, out)| {
        let mut den = 0.0f32;
        for i in 0..d {
            let qi = queries.data[i * m + p];
            den += qi * k_sum[i];
            for (o, &x) in out.iter_mut().zip(&kv[i * c..(i + 1) * c]) {
                *o += qi * x;
            }
        }
        let den = den + GLOBAL_EPS;
        for o in out.iter_mut() {
            *o /= den;
        }
    });
    let mut out = Map::zeros(c, 1, m);
    for (p, row) in by_query.chunks(c).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out.data[j * m + p] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_matches_direct_definition() {
        let (cin, cout, k, h, w) = (3, 2, 3, 4, 5);
        let weight: Vec<f32> = (0..cout * cin * k * k)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let bias = vec![0.5, -0.25];
        let conv = Conv {
            cout,
            cin,
            k,
            weight: weight.clone(),
            bias: bias.clone(),
        };
        let x = Map {
            c: cin,
            h,
            w,
            data: (0..cin * h * w).map(|i| (i as f32 * 0.11).cos()).collect(),
        };
        let y = conv.forward(&x);
        for o in 0..cout {
            for yy in 0..h as isize {
                for xx in 0..w as isize {
                    let mut want = bias[o];
                    for i in 0..cin {
                        for ky in 0..k as isize {
                            for kx in 0..k as isize {
                                let (iy, ix) = (yy + ky - 1, xx + kx - 1);
                                if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                    want += weight
                                        [((o * cin + i) * k + ky as usize) * k + kx as usize]
                                        * x.data[(i * h + iy as usize) * w + ix as usize];
                                }
                            }
                        }
                    }
                    let got = y.data[(o * h + yy as usize) * w + xx as usize];
                    // Same order of operations, so equal to the bit.
                    assert_eq!(got.to_bits(), want.to_bits(), "o={o} y={yy} x={xx}");
                }
            }
        }
    }

    #[test]
    fn depth_to_space_layout() {
        let x = Map {
            c: 4,
            h: 1,
            w: 1,
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        assert_eq!(depth_to_space(&x).data, vec![0.0, 1.0, 2.0, 3.0]);
    }
}
