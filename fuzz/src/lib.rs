//! What each fuzz target checks, one function per target, over bytes from the fuzzer.
//!
//! Every function must return for every input, never panic, hang or allocate far beyond its
//! input (libFuzzer reports all three); where an input is accepted, it also checks a property
//! that a wrong parser would break. The functions live in a library, not in the fuzzing
//! binaries, so that `cargo test` replays the committed corpus and every crash the fuzzer has
//! found (`testdata/fuzz/`) through exactly the code that was fuzzed, on the stable toolchain
//! and without libFuzzer.
//!
//! Inputs that the fuzzer mutates would almost never carry a correct CRC32, and the checks
//! behind the CRC would go unexplored; [`reseal`] therefore rewrites a version 2 stream's CRC
//! before the container and decode targets read it (the CRC check itself is tested directly,
//! in `bitstream`).

use std::io::Cursor;
use std::sync::LazyLock;

use bitstream::{Payload, alpha, icc};
use burn::backend::NdArray;
use codec::compress::{Codec, CodecError, Decoded};
use codec::image_io::Planar;
use codec::weights::ModelFile;

/// The decode target codes images of at most this many pixels: the synthesis transform's time
/// grows with the image, and what the fuzzer should spend its executions on is the parsing and
/// entropy decoding in front of it, not large convolutions.
pub const MAX_DECODE_PIXELS: u64 = 64 * 64;

/// The image target reads images of at most this many pixels: the readers allocate the claimed
/// image up front (as they should for a valid file), which libFuzzer would report as a huge
/// allocation for a tiny input claiming the largest size Ember accepts (2^28 pixels).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 20;

/// `bytes` with a correct CRC32 in their last four bytes if they look like a version 2 stream
/// (magic, version 2, room for a CRC), else unchanged.
pub fn reseal(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.len() >= 9 && out.starts_with(b"EMBR") && out[4] == 2 {
        let end = out.len() - 4;
        let crc = crc32fast::hash(&out[..end]);
        out[end..].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// The container: any bytes either fail to parse or parse into a stream that writes back to
/// the same bytes (version 2, whose writer is the current one).
pub fn container(data: &[u8]) {
    let bytes = reseal(data);
    let Ok(stream) = bitstream::read(&bytes) else {
        return;
    };
    if let Payload::Single(payload) = stream.payload {
        let again = bitstream::write(&stream.header, stream.extras, payload)
            .expect("a stream that parses writes back");
        assert_eq!(again, bytes, "parse and write back changed the stream");
    }
}

/// The shipped model, on ndarray (the backend that needs nothing beside the binary).
static SHIPPED: LazyLock<Codec<NdArray>> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/ember-mrc-v1.safetensors"
    );
    let file = ModelFile::load(std::path::Path::new(path)).expect("the shipped model loads");
    Codec::new(file, Default::default()).expect("the shipped model builds")
});

/// The decoder with the shipped model, on small images, up to the synthesis transform
/// ([`Codec::decode_latents`]: container, entropy decoding under the deterministic entropy
/// parameters, alpha plane, colour profile: all that the stream's bytes reach). A stream that
/// it accepts has latents of its header's size. The synthesis itself (slow when instrumented,
/// and reading no bytes) runs in [`decode_fully`], which the corpus replay uses.
pub fn decode(data: &[u8]) {
    checked_latents(data);
}

/// [`decode`], then the whole decoder, synthesis included, on the same bytes: it accepts
/// exactly what `decode_latents` accepted, with the same symbols, and the image has the
/// header's size.
pub fn decode_fully(data: &[u8]) {
    let Some((bytes, latents)) = checked_latents(data) else {
        return;
    };
    match (latents, SHIPPED.decompress_with_latents(&bytes)) {
        (Ok(decoded), Ok((image, symbols))) => {
            let h = decoded.header;
            assert_eq!((image.width, image.height), (h.width, h.height));
            assert_eq!(
                image.rgb.len(),
                3 * image.width as usize * image.height as usize
            );
            assert!(image.rgb.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(symbols == decoded.latents, "the two decodes disagree");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "decode_latents {} but decompress {}",
            if a.is_ok() { "accepts" } else { "refuses" },
            if b.is_ok() { "accepts" } else { "refuses" }
        ),
    }
}

/// What [`decode`] checks, done once: the resealed bytes and `decode_latents`' result on
/// them, or `None` where the container refuses them (and the decoder must too) or the image
/// is larger than [`MAX_DECODE_PIXELS`].
fn checked_latents(data: &[u8]) -> Option<(Vec<u8>, Result<Decoded, CodecError>)> {
    let bytes = reseal(data);
    let header = match bitstream::read(&bytes) {
        Ok(stream) => stream.header,
        Err(_) => {
            assert!(SHIPPED.decode_latents(&bytes).is_err());
            return None;
        }
    };
    if u64::from(header.width) * u64::from(header.height) > MAX_DECODE_PIXELS {
        return None;
    }
    let latents = SHIPPED.decode_latents(&bytes);
    if let Ok(decoded) = &latents {
        let (w, h) = (header.width as usize, header.height as usize);
        let y = &decoded.y_hat;
        assert_eq!(y.data.len(), y.c * y.h * y.w);
        assert!(
            y.h * 16 >= h && y.w * 16 >= w,
            "the latent covers the image"
        );
        if let Some(a) = &decoded.alpha {
            assert_eq!(a.len(), w * h);
        }
    }
    Some((bytes, latents))
}

/// The alpha plane. The first two bytes give a width and a height (1 to 64), the third's low
/// bit the depth (8 or 16); the rest is read as a stored plane, which must unpack or be
/// refused, and whose samples, when it unpacks, must pack and unpack back to themselves.
pub fn alpha(data: &[u8]) {
    let [w, h, d, rest @ ..] = data else {
        return;
    };
    let (width, height) = (usize::from(w % 64) + 1, usize::from(h % 64) + 1);
    let depth = if d & 1 == 1 { 16 } else { 8 };
    if let Ok(samples) = alpha::unpack(rest, width, height, depth) {
        assert_eq!(samples.len(), width * height);
        let packed = alpha::pack(&samples, width, depth);
        assert_eq!(
            alpha::unpack(&packed, width, height, depth),
            Ok(samples),
            "alpha plane round trip"
        );
    }
}

/// ICC profiles: the checks a stream's or an input image's profile goes through, and the
/// description `ember info` prints.
pub fn icc(data: &[u8]) {
    let valid = icc::check(data).is_ok();
    let srgb = icc::is_srgb(data);
    let described = icc::describe(data);
    assert!(!described.is_empty());
    // A profile found to be sRGB is one that passed the checks.
    assert!(
        !srgb || valid,
        "is_srgb accepted a profile that check refuses"
    );
}

/// The image readers Ember takes input through (PNG, JPEG, PNM, told apart by content), up to
/// [`MAX_IMAGE_PIXELS`]. An image that reads has planes of its size.
pub fn image(data: &[u8]) {
    let claimed = image::ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    if claimed.is_some_and(|(w, h)| u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS) {
        return;
    }
    if let Ok(img) = Planar::decode("input", data) {
        let n = img.width as usize * img.height as usize;
        assert_eq!(img.rgb.len(), 3 * n);
        if let Some(a) = &img.alpha {
            assert_eq!(a.len(), n);
        }
        assert!(img.rgb.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
