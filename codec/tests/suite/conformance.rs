//! Golden streams: files in `testdata/golden/` that every future build must decode to exactly
//! the recorded latents. They are coded with the synthetic conformance model, which is pinned
//! here too; `golden/model2/` holds the same pictures coded by model 2's (global references). `testdata/golden/` holds streams in the current format version; `golden/v1/`
//! holds version 1 streams of the same pictures (with their own MANIFEST and references, as
//! the encoder of the day made them), which must keep decoding exactly.
//! Regenerate the current ones (only together with a new format version) with
//! `EMBER_WRITE_GOLDEN=1 cargo test -p codec --test suite conformance::`; older versions' files are
//! never rewritten.

use std::path::{Path, PathBuf};

use crate::common::*;
use codec::backend;
use codec::bitstream::{self, Payload};
use codec::image_io::Planar;
use codec::metrics::psnr_rgb8;
use codec::zoo::ModelId;

/// Fingerprint of `ModelFile::synthetic(1)`.
const SYNTHETIC_HASH: u64 = 15_488_162_880_868_483_754;

/// (name, width, height, channels, bit depth, quality)
const CASES: [(&str, u32, u32, u8, u8, f32); 4] = [
    ("rgb-1x1-q1", 1, 1, 3, 8, 1.0),
    ("rgb-17x33-q4", 17, 33, 3, 8, 4.0),
    ("gray16-64x48-q2.5", 64, 48, 1, 16, 2.5),
    ("rgb-130x70-q8", 130, 70, 3, 8, 8.0),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/golden")
}

#[test]
fn synthetic_models_are_pinned() {
    for (model, hash) in [
        (ModelId::MrcV1, SYNTHETIC_HASH),
        (ModelId::MrcV2, SYNTHETIC_V2_HASH),
    ] {
        assert_eq!(
            synthetic_of(model).hash,
            hash,
            "{model:?}'s conformance model changed; golden streams would no longer match it"
        );
    }
}

/// Fingerprint of `ModelFile::synthetic_of(ModelId::MrcV2, 1)`, model 2's conformance model.
const SYNTHETIC_V2_HASH: u64 = 17_438_169_472_854_804_196;

/// Where the current format's golden streams of `model`'s conformance model are, and the
/// folders of older formats' streams of it that must keep decoding, with their versions.
fn golden_dirs(model: ModelId) -> (PathBuf, Vec<(u8, PathBuf)>) {
    match model {
        ModelId::MrcV1 => (dir(), vec![(1, dir().join("v1"))]),
        ModelId::MrcV2 => (dir().join("model2"), vec![]),
    }
}

#[test]
fn golden_streams_decode_exactly() {
    for model in synthetics() {
        check_goldens(&model);
    }
}

/// Writes (with `EMBER_WRITE_GOLDEN` set) or checks `model`'s golden streams of [`CASES`].
fn check_goldens(model: &codec::weights::ModelFile) {
    let write = std::env::var_os("EMBER_WRITE_GOLDEN").is_some();
    let (dir, older) = golden_dirs(model.model);
    let mut manifest =
        String::from("# name latents-crc32 (decoded symbols of ẑ then every slice, i32 LE)\n");
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, w, h, ch, depth, q) in CASES {
        let stream = dir.join(format!("{name}.ember"));
        let reference = dir.join(format!("{name}.png"));
        if write {
            let (bytes, latents) = backend::run(
                cpu_backends()[0],
                Encode(model.clone(), picture(w, h, ch, depth), q),
            )
            .unwrap();
            codec::fsutil::write_atomic(&stream, &bytes).unwrap();
            let (rec, _) = backend::run(cpu_backends()[0], Decode(model.clone(), bytes))
                .unwrap()
                .unwrap();
            rec.save_png(&reference).unwrap();
            manifest.push_str(&format!("{name} {:08x}\n", latents_crc(&latents)));
            continue;
        }
        check_golden(model, name, bitstream::VERSION, &dir);
        for (version, dir) in &older {
            check_golden(model, name, *version, dir);
        }
    }
    if write {
        std::fs::write(dir.join("MANIFEST"), manifest).unwrap();
    }
}

/// Decodes `dir/name.ember` on every CPU backend: it must be in format `version`, decode to
/// the latents `dir/MANIFEST` records, and reconstruct `dir/name.png` within 50 dB.
fn check_golden(model: &codec::weights::ModelFile, name: &str, version: u8, dir: &Path) {
    let recorded = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let want = recorded
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from {}/MANIFEST", dir.display()));
    let reference = Planar::load(&dir.join(format!("{name}.png"))).unwrap();
    let stream = dir.join(format!("{name}.ember"));
    let bytes = std::fs::read(&stream).unwrap_or_else(|e| panic!("{}: {e}", stream.display()));
    assert_eq!(bitstream::read(&bytes).unwrap().version, version);
    for kind in cpu_backends() {
        let (rec, latents) = backend::run(kind, Decode(model.clone(), bytes.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(
            format!("{:08x}", latents_crc(&latents)),
            want,
            "{name} v{version} on {}",
            kind.name()
        );
        let p = psnr_rgb8(&rec.as_stored(), &reference);
        assert!(
            p >= 50.0,
            "{name} v{version} on {}: reconstruction {p:.1} dB from the reference",
            kind.name()
        );
    }
}

/// The synthetic model, and the header and payload of a 64×64 picture it coded at quality 4.
fn coded_64x64() -> (codec::weights::ModelFile, bitstream::Header, Vec<u8>) {
    let model = synthetic();
    let (bytes, _) = backend::run(
        cpu_backends()[0],
        Encode(model.clone(), picture(64, 64, 3, 8), 4.0),
    )
    .unwrap();
    let stream = bitstream::read(&bytes).unwrap();
    let Payload::Single(payload) = stream.payload else {
        panic!("the encoder writes version {}", bitstream::VERSION)
    };
    (model, stream.header, payload.to_vec())
}

/// A well-formed container whose header claims a huge image over a tiny payload is rejected
/// before the decoder allocates latent maps of the claimed size (which would take gigabytes),
/// in either format version.
#[test]
fn huge_claimed_size_with_tiny_payloads_is_rejected_up_front() {
    let (model, mut header, payload) = coded_64x64();
    header.width = 16384;
    header.height = 16384;
    let forged_v2 = bitstream::write(&header, Default::default(), &payload).unwrap();
    // Version 1: the same claim patched into a golden stream (sides at bytes 16 and 20,
    // padding at 28), resealed with a correct CRC.
    let mut forged_v1 = std::fs::read(dir().join("v1/rgb-17x33-q4.ember")).unwrap();
    forged_v1[16..20].copy_from_slice(&16384u32.to_le_bytes());
    forged_v1[20..24].copy_from_slice(&16384u32.to_le_bytes());
    forged_v1[28..30].copy_from_slice(&[0, 0]);
    let n = forged_v1.len() - 4;
    let crc = crc32fast::hash(&forged_v1[..n]);
    forged_v1[n..].copy_from_slice(&crc.to_le_bytes());
    for forged in [forged_v2, forged_v1] {
        let err = backend::run(cpu_backends()[0], Decode(model.clone(), forged))
            .unwrap()
            .unwrap_err();
        // This message comes from the size check that runs before any latent map exists.
        assert!(err.contains("too few for the symbols"), "{err}");
    }
}

/// A payload that is garbage behind a valid container (correct CRC, consistent header), as a
/// crafted file would be: the decoder must return an image or an error for each, never panic,
/// whatever symbols, escapes and entropy parameters the garbage decodes to.
#[test]
fn garbage_payloads_in_valid_containers_never_panic() {
    let (model, header, payload) = coded_64x64();
    // xorshift64: the cases are the same on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let (mut rejected, mut decoded) = (0, 0);
    for case in 0..96 {
        let mut p = payload.clone();
        match case % 4 {
            0 => {
                let at = next(p.len());
                p[at] = next(256) as u8;
            }
            1 => {
                let at = next(p.len());
                let end = (at + 1 + next(8)).min(p.len());
                p[at..end].fill(if case % 8 == 1 { 0xff } else { 0 });
            }
            // Whole 32-bit words, the coder's unit, so that the garbage reaches the symbols.
            2 => p.truncate(4 * (1 + next(p.len() / 4))),
            _ => p.extend((0..4 * (1 + next(16))).map(|_| next(256) as u8)),
        }
        let forged = bitstream::write(&header, Default::default(), &p).unwrap();
        match backend::run(cpu_backends()[0], Decode(model.clone(), forged)).unwrap() {
            Ok((image, _)) => {
                assert_eq!((image.width, image.height), (64, 64), "case {case}");
                decoded += 1;
            }
            Err(_) => rejected += 1,
        }
    }
    // Nearly all garbage is caught by the coder (escapes out of range, data left over or
    // missing at the end), after the symbols before it went through the entropy parameters.
    assert!(rejected > 80, "{rejected} rejected, {decoded} decoded");
}
