//! Files decode bit-exactly on any backend and thread count.

use crate::common::*;
use codec::backend;
use codec::metrics::psnr_rgb8;

#[test]
fn round_trips_reproduce_latents_at_all_sizes() {
    let kind = cpu_backends()[0];
    for model in synthetics() {
        for (w, h, ch, depth) in [
            (1, 1, 3, 8),
            (17, 33, 3, 8),
            (64, 64, 1, 16),
            (768, 512, 3, 8),
        ] {
            let img = picture(w, h, ch, depth);
            let (bytes, latents) =
                backend::run(kind, Encode(model.clone(), img.clone(), 4.0)).unwrap();
            let (out, decoded) = backend::run(kind, Decode(model.clone(), bytes.clone()))
                .unwrap()
                .unwrap();
            assert_eq!(decoded, latents, "{w}x{h}");
            assert_eq!(
                (out.width, out.height, out.channels, out.bit_depth),
                (w, h, ch, depth)
            );
            let again = backend::run(kind, Encode(model.clone(), img, 4.0))
                .unwrap()
                .0;
            assert_eq!(again, bytes, "{w}x{h}: encoding is not repeatable");
        }
    }
}

/// Encode on each CPU backend, decode on each: identical latents everywhere, and
/// reconstructions within 50 dB of each other.
#[test]
fn streams_decode_identically_across_backends() {
    let kinds = cpu_backends();
    if kinds.len() < 2 {
        skip(format!(
            "only {kinds:?} built; build with --features tch for the cross-backend check"
        ));
    }
    let img = picture(96, 80, 3, 8);
    for model in synthetics() {
        for &enc in &kinds {
            let (bytes, latents) =
                backend::run(enc, Encode(model.clone(), img.clone(), 6.0)).unwrap();
            let mut recs = Vec::new();
            for &dec in &kinds {
                let (rec, decoded) = backend::run(dec, Decode(model.clone(), bytes.clone()))
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    decoded,
                    latents,
                    "encoded on {}, decoded on {}",
                    enc.name(),
                    dec.name()
                );
                recs.push(rec);
            }
            for r in &recs[1..] {
                let p = psnr_rgb8(&recs[0], r);
                assert!(
                    p >= 50.0,
                    "reconstructions differ across backends: {p:.1} dB"
                );
            }
        }
    }
}

/// The `ember` binary writes byte-identical streams with 1 and 2 rayon threads.
#[test]
fn streams_do_not_depend_on_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.png");
    picture(200, 130, 3, 8).save_png(&input).unwrap();
    for file in synthetics() {
        let model = dir.path().join("model.safetensors");
        file.save(&model).unwrap();
        let mut outputs = Vec::new();
        for threads in ["1", "2"] {
            let out = dir.path().join(format!("t{threads}.ember"));
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_ember-codec"))
                .env("RAYON_NUM_THREADS", threads)
                .args([
                    "encode",
                    input.to_str().unwrap(),
                    "-o",
                    out.to_str().unwrap(),
                    "--quality",
                    "5",
                    "--model",
                    model.to_str().unwrap(),
                ])
                .status()
                .unwrap();
            assert!(status.success());
            outputs.push(std::fs::read(out).unwrap());
        }
        assert_eq!(outputs[0], outputs[1], "{:?}", file.model);
    }
}

/// Codes an image with tiles of 16 latent pixels and with one whole-image tile; decodes each
/// stream both ways, checking the latents and that the two reconstructions agree within
/// 50 dB; returns each stream's latents.
pub struct Tiled(pub codec::weights::ModelFile, pub codec::image_io::Planar);

impl codec::backend::Job for Tiled {
    type Output = Vec<codec::compress::Latents>;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output {
        let with_tile = |tile| {
            codec::compress::Codec::<B>::new(self.0.clone(), device.clone())
                .unwrap()
                .with_tile(tile)
        };
        let whole = with_tile(1 << 20);
        [16, 1 << 20]
            .into_iter()
            .map(|tile| {
                let codec = with_tile(tile);
                let (bytes, latents) = codec.compress_with_latents(&self.1, 5.0).unwrap();
                let (rec_small, dec) = codec.decompress_with_latents(&bytes).unwrap();
                let (rec_whole, _) = whole.decompress_with_latents(&bytes).unwrap();
                assert_eq!(dec, latents);
                let p = psnr_rgb8(&rec_small, &rec_whole);
                assert!(
                    p >= 50.0,
                    "tiled synthesis differs from whole-image synthesis: {p:.1} dB"
                );
                latents
            })
            .collect()
    }
}

/// Tiled transforms join without visible seams: the same stream decoded with small tiles and
/// with one whole-image tile gives the same latents and reconstructions within 50 dB; encoding
/// with small tiles changes almost no symbol.
#[test]
fn tiles_join_without_seams() {
    // 1100×700 pads to 1152×704: 72×44 latent pixels, 5×3 tiles of 16 with every kind of seam.
    let out = backend::run(
        cpu_backends()[0],
        Tiled(synthetic(), picture(1100, 700, 3, 8)),
    )
    .unwrap();
    let (small, whole) = (&out[0], &out[1]);
    let all: Vec<(i32, i32)> = small
        .y
        .iter()
        .flatten()
        .zip(whole.y.iter().flatten())
        .map(|(a, b)| (*a, *b))
        .collect();
    let differ = all.iter().filter(|(a, b)| a != b).count();
    assert!(
        differ * 1000 <= all.len(),
        "{differ} of {} symbols differ between tiled and whole-image analysis",
        all.len()
    );
}

/// The shipped model's synthesis ends in a post-filter, which also runs tile by tile: it
/// reaches 3 pixels further than the synthesis transform, and the tiles' 64-pixel margin still
/// covers both (the reconstructions agree within 50 dB, checked in [`Tiled`]).
#[test]
fn the_post_filter_joins_tiles_without_seams() {
    let model = shipped_model();
    assert!(
        model.has_post_filter(),
        "the shipped model has no post-filter"
    );
    // 600×360 pads to 640×384: 40×24 latent pixels, 3×2 tiles of 16.
    backend::run(cpu_backends()[0], Tiled(model, picture(600, 360, 3, 8))).unwrap();
}
