//! The alpha plane: coded losslessly beside the lossy colour.
//!
//! Transparency is shape, not texture: a logo's or a cut-out's edge must come back where it
//! was, and an error of a few levels in a mask shows as a halo or a hole, so Ember does not code
//! alpha through the learned transform (which was trained on colour photographs) but stores it
//! exactly, as WebP and JPEG XL do for their lossless alpha. Alpha planes are mostly flat runs
//! with edges between them, which a left-neighbour prediction turns into runs of zeros and a
//! general-purpose compressor then codes in a few bits per edge pixel; an opaque plane is not
//! stored at all.
//!
//! Layout (`bitstream-spec/SPEC.md`, *Alpha plane*): each sample is replaced by its difference,
//! modulo 2^depth, from the sample to its left (the first column's from the sample above, the
//! first sample's from 0); the differences, one byte each at 8 bits and two little-endian
//! bytes at 16, in row-major order, form one Brotli stream (RFC 7932).
//!
//! Why these two choices, measured on a soft-edged cut-out of kodim23 (768×512, a 20-pixel
//! ramp round an ellipse): with the left prediction, zlib level 9 took 8,600 bytes, zstd
//! level 22 4,480, xz 4,400 and Brotli quality 11 4,244 (WebP's lossless alpha on the same
//! plane: about 3,900); Brotli is also pure Rust and its format is fixed by an RFC. Other
//! predictions did worse with zlib (the sample above 8,677, Paeth 9,064, MED 9,373; only A + B − C came
//! close, 8,453, and it lost under xz, 7,576 against 4,400), and none at all took 22,540
//! (zlib) or 9,781 (Brotli).

use brotli::enc::BrotliEncoderParams;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState, HeapAlloc};

/// Brotli's densest quality: alpha planes are small next to the colour, so the encoder can
/// afford the slowest search.
const QUALITY: i32 = 11;
/// Brotli's default window, 4 MiB (a decoder needs at most that much beside the plane).
const WINDOW_BITS: i32 = 22;

/// The prediction each sample is coded against: its left neighbour, or for the first column the
/// sample above, or 0 for the first sample.
fn predicted(samples: &[u16], width: usize, i: usize) -> u16 {
    if !i.is_multiple_of(width) {
        samples[i - 1]
    } else if i >= width {
        samples[i - width]
    } else {
        0
    }
}

/// The alpha samples of a `width`-wide image (row-major, at `bit_depth` 8 or 16) as stored in
/// a stream.
pub fn pack(samples: &[u16], width: usize, bit_depth: u8) -> Vec<u8> {
    let mask: u16 = if bit_depth == 16 { u16::MAX } else { 0xFF };
    let mut residuals = Vec::with_capacity(samples.len() * usize::from(bit_depth / 8));
    for (i, &a) in samples.iter().enumerate() {
        let r = a.wrapping_sub(predicted(samples, width, i)) & mask;
        if bit_depth == 16 {
            residuals.extend_from_slice(&r.to_le_bytes());
        } else {
            residuals.push(r as u8);
        }
    }
    let params = BrotliEncoderParams {
        quality: QUALITY,
        lgwin: WINDOW_BITS,
        size_hint: residuals.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &residuals[..], &mut out, &params)
        .expect("compressing from a slice into a Vec cannot fail");
    out
}

/// The alpha samples stored in `data` for a `width × height` image at `bit_depth`: exactly one
/// Brotli stream, filling `data`, that decompresses to exactly the image's residuals.
/// Allocates the image's samples, so callers check first that the stream is plausible for its
/// size (the decoder does so from the colour payload).
pub fn unpack(
    data: &[u8],
    width: usize,
    height: usize,
    bit_depth: u8,
) -> Result<Vec<u16>, &'static str> {
    let bytes_per_sample = usize::from(bit_depth / 8);
    let mut residuals = vec![0u8; width * height * bytes_per_sample];
    let mut state = BrotliState::new(
        HeapAlloc::<u8>::default(),
        HeapAlloc::<u32>::default(),
        HeapAlloc::default(),
    );
    let (mut available_in, mut read) = (data.len(), 0);
    let (mut available_out, mut written, mut total) = (residuals.len(), 0, 0);
    let result = BrotliDecompressStream(
        &mut available_in,
        &mut read,
        data,
        &mut available_out,
        &mut written,
        &mut residuals,
        &mut total,
        &mut state,
    );
    match result {
        BrotliResult::ResultSuccess => {}
        BrotliResult::NeedsMoreOutput => return Err("it holds more samples than the image has"),
        BrotliResult::NeedsMoreInput => return Err("its Brotli stream is cut short"),
        BrotliResult::ResultFailure => return Err("it is not a valid Brotli stream"),
    }
    if written != residuals.len() {
        return Err("it holds fewer samples than the image has");
    }
    if read != data.len() {
        return Err("bytes follow its Brotli stream");
    }
    let mut samples: Vec<u16> = if bit_depth == 16 {
        residuals
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    } else {
        residuals.iter().map(|&b| u16::from(b)).collect()
    };
    let mask: u16 = if bit_depth == 16 { u16::MAX } else { 0xFF };
    for i in 0..samples.len() {
        samples[i] = samples[i].wrapping_add(predicted(&samples, width, i)) & mask;
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An anti-aliased disc on a transparent background: the shape of a typical alpha plane.
    fn disc(w: usize, h: usize, max: u16) -> Vec<u16> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let r = ((x - w as f32 / 2.0).hypot(y - h as f32 / 2.0)) / (w.min(h) as f32 / 3.0);
                ((1.5 - r).clamp(0.0, 1.0) * 2.0).min(1.0) * f32::from(max)
            })
            .map(|v| v.round() as u16)
            .collect()
    }

    #[test]
    fn a_mask_round_trips_and_packs_small() {
        for (depth, max) in [(8, 255), (16, 65535)] {
            let (w, h) = (256, 192);
            let a = disc(w, h, max);
            let packed = pack(&a, w, depth);
            assert_eq!(unpack(&packed, w, h, depth).unwrap(), a, "{depth}-bit");
            // The flat inside and outside cost almost nothing; the 32-pixel ramp between them
            // is what costs, and at 16 bits its low bytes are noise to DEFLATE.
            let raw = a.len() * usize::from(depth / 8);
            let ratio = if depth == 8 { 12 } else { 4 };
            assert!(
                packed.len() * ratio < raw,
                "{depth}-bit: {} of {raw} bytes",
                packed.len()
            );
        }
    }

    proptest! {
        #[test]
        fn any_plane_round_trips(
            w in 1usize..40,
            h in 1usize..20,
            deep in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let depth = if deep { 16 } else { 8 };
            let max = if deep { u64::from(u16::MAX) } else { 255 };
            let mut s = seed | 1;
            let a: Vec<u16> = (0..w * h)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % (max + 1)) as u16
                })
                .collect();
            prop_assert_eq!(unpack(&pack(&a, w, depth), w, h, depth).unwrap(), a);
        }
    }

    #[test]
    fn rejects_every_malformed_plane() {
        let (w, h) = (16, 8);
        let a = disc(w, h, 255);
        let good = pack(&a, w, 8);
        let mut trailing = good.clone();
        trailing.push(0);
        // WBITS 10 (the 7-bit code 0b0100001), then a metablock header with reserved bits
        // set: no valid stream starts so.
        let cases: [(&[u8], usize, &str); 6] = [
            (&[], h, "cut short"),
            (&good[..good.len() / 2], h, "cut short"),
            (&[0x21, 0xff, 0xff, 0xff], h, "not a valid"),
            (&good, h - 1, "more samples"),
            (&good, h + 1, "fewer samples"),
            (&trailing, h, "bytes follow"),
        ];
        for (data, rows, expected) in cases {
            let e = unpack(data, w, rows, 8).unwrap_err();
            assert!(e.contains(expected), "{expected}: got {e}");
        }
    }
}
