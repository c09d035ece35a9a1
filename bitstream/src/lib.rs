//! The Ember file format: reader and writer. `bitstream-spec/SPEC.md` specifies it byte by
//! byte; this crate is its only implementation, and the two change together. It has no model
//! and no compute backend in it, so that what only reads files (`ember info`, fuzzing) does
//! not carry them.
//!
//! Ember writes version 2: a 21-byte header, one entropy-coded payload holding every part of
//! the latent in coding order, and a CRC32. It still reads version 1, whose larger header and
//! one framed section per part cost about 120 bytes more per file (see [`v1`]).
//!
//! The reader is written for hostile input: every length is checked against the bytes that are
//! actually present before it is used, payloads are borrowed from the input (nothing is
//! allocated from a claimed size), and each way a file can be wrong has its own error.

pub mod alpha;
pub mod icc;
pub mod v1;

/// A model architecture a stream may name (the registry: ids are never reused; a decoder
/// refuses an id it does not know rather than decoding garbage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelId {
    /// Ember's multi-reference checkerboard model, first generation.
    MrcV1 = 1,
    /// Model 1 with global references in its entropy model (intra- and inter-slice linear
    /// attention over each slice's decoded anchors).
    MrcV2 = 2,
}

impl ModelId {
    /// Every architecture this build can name.
    pub const ALL: [ModelId; 2] = [ModelId::MrcV1, ModelId::MrcV2];

    /// Looks up the id stored in a stream.
    pub fn from_u16(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|m| *m as u16 == id)
    }

    /// Short name, as printed by `ember info` and used in model file names.
    pub fn name(self) -> &'static str {
        match self {
            ModelId::MrcV1 => "ember-mrc-v1",
            ModelId::MrcV2 => "ember-mrc-v2",
        }
    }
}

/// The four bytes every Ember file starts with.
pub const MAGIC: [u8; 4] = *b"EMBR";
/// The format version this module writes.
pub const VERSION: u8 = 2;
/// Bytes of the version 2 header, magic included.
pub const HEADER_LEN: usize = 21;
/// Bytes of the trailing CRC32.
pub const CRC_LEN: usize = 4;
/// Largest width or height.
pub const MAX_SIDE: u32 = 65_535;
/// Largest pixel count, 2^28 (16384 × 16384).
pub const MAX_PIXELS: u64 = 1 << 28;
/// Quality is stored in units of 1/256: 1.0 ..= 8.0.
pub const QUALITY_RANGE_Q8: std::ops::RangeInclusive<u16> = 256..=2048;

/// Bit of the version 2 format byte set for RGB (clear: grayscale).
const FORMAT_RGB: u8 = 1;
/// Bit of the version 2 format byte set for a 16-bit source (clear: 8-bit).
const FORMAT_16BIT: u8 = 2;
/// Bit of the version 2 format byte set when a colour profile follows the header.
const FORMAT_PROFILE: u8 = 4;
/// Bit of the version 2 format byte set when an alpha plane follows the header (and profile).
const FORMAT_ALPHA: u8 = 8;
/// Bytes of the length field in front of a colour profile or an alpha plane.
const LEN_LEN: usize = 4;

/// What a stream says about the image and the model that coded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub model: ModelId,
    /// Fingerprint of the exact model weights (and entropy tables) that coded the stream.
    pub weights_hash: u64,
    pub width: u32,
    pub height: u32,
    /// 1 (grayscale) or 3 (RGB): what the decoder writes back.
    pub channels: u8,
    /// 8 or 16: the sample depth of the source image, restored on decode.
    pub bit_depth: u8,
    /// Quality in 1/256 units (256 = 1.0, 2048 = 8.0).
    pub quality_q8: u16,
}

/// The entropy-coded data of a parsed stream, borrowed from the input bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Version 2: one stream holding every part (ẑ, then each slice's anchors and
    /// non-anchors) in coding order.
    Single(&'a [u8]),
    /// Version 1: one stream per part, each framed as a section, and the padding the header
    /// recorded (version 2 derives it from the size).
    Sections {
        sections: Vec<v1::Section<'a>>,
        pad_right: u8,
        pad_bottom: u8,
    },
}

/// What a version 2 stream may carry beside the coded colour, each part length-prefixed
/// between the header and the payload, in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras<'a> {
    /// The ICC profile the source image carried (not an sRGB one: the encoder leaves those
    /// out), to be written into the decoded image.
    pub profile: Option<&'a [u8]>,
    /// The source's alpha plane, coded losslessly ([`crate::alpha`]); absent when the source
    /// had none or an opaque one. Its shape is checked here, its samples by the decoder.
    pub alpha: Option<&'a [u8]>,
}

/// A stream parsed and checked by [`read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream<'a> {
    /// The format version the file was written in.
    pub version: u8,
    pub header: Header,
    /// Colour profile and alpha plane (version 2 only).
    pub extras: Extras<'a>,
    pub payload: Payload<'a>,
    pub crc: u32,
}

impl Stream<'_> {
    /// Bytes of entropy-coded data.
    pub fn payload_len(&self) -> usize {
        match &self.payload {
            Payload::Single(data) => data.len(),
            Payload::Sections { sections, .. } => sections.iter().map(|s| s.data.len()).sum(),
        }
    }
}

/// Everything that can be wrong with a stream. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an Ember file (bad magic bytes)")]
    BadMagic,
    #[error("unsupported format version {0} (this build reads versions 1 and {VERSION})")]
    UnsupportedVersion(u8),
    #[error("file is truncated: {what} needs {needed} bytes, the file has {have}")]
    Truncated {
        what: &'static str,
        needed: u64,
        have: u64,
    },
    #[error(
        "section {section} runs past the end of the file: sections need {needed} bytes, the file has {have}"
    )]
    SectionPastEnd {
        section: usize,
        needed: u64,
        have: u64,
    },
    #[error("{0} unexpected bytes after the last section")]
    TrailingBytes(u64),
    #[error(
        "checksum mismatch: stored CRC32 {stored:#010x}, computed {computed:#010x} (the file is corrupt)"
    )]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("reserved header bits {0:#04x} are set")]
    ReservedFlags(u8),
    #[error("unknown model id {0} (this build knows {known})", known = known_models())]
    UnknownModel(u16),
    #[error(
        "image size {width}x{height} is out of range (sides 1..={MAX_SIDE}, at most {MAX_PIXELS} pixels)"
    )]
    BadDimensions { width: u32, height: u32 },
    #[error("invalid header field {field} = {value}")]
    BadField { field: &'static str, value: u32 },
    #[error("unknown section kind {kind} in section {section}")]
    UnknownSection { section: usize, kind: u8 },
    #[error("bad colour profile: {0}")]
    BadProfile(&'static str),
    #[error("bad alpha plane: {0}")]
    BadAlpha(&'static str),
}

fn known_models() -> String {
    ModelId::ALL
        .iter()
        .map(|m| format!("{} = {}", *m as u16, m.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks on the header's meaning that every version shares.
fn check_header(h: &Header) -> Result<(), FormatError> {
    if h.width == 0
        || h.height == 0
        || h.width > MAX_SIDE
        || h.height > MAX_SIDE
        || u64::from(h.width) * u64::from(h.height) > MAX_PIXELS
    {
        return Err(FormatError::BadDimensions {
            width: h.width,
            height: h.height,
        });
    }
    if !matches!(h.channels, 1 | 3) {
        return Err(FormatError::BadField {
            field: "channels",
            value: h.channels.into(),
        });
    }
    if !matches!(h.bit_depth, 8 | 16) {
        return Err(FormatError::BadField {
            field: "bit depth",
            value: h.bit_depth.into(),
        });
    }
    if !QUALITY_RANGE_Q8.contains(&h.quality_q8) {
        return Err(FormatError::BadField {
            field: "quality",
            value: h.quality_q8.into(),
        });
    }
    Ok(())
}

/// Little-endian field access into a buffer whose length was checked beforehand.
fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N]
        .try_into()
        .expect("length checked by the caller")
}

/// Appends the CRC32 of everything before it.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The stored CRC32 at `end`, checked against the bytes before it.
fn check_crc(bytes: &[u8], end: usize) -> Result<u32, FormatError> {
    let stored = u32::from_le_bytes(le(bytes, end));
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(FormatError::CrcMismatch { stored, computed });
    }
    Ok(stored)
}

/// Serializes a version 2 stream, with the source's colour profile and alpha plane if it has
/// them. Fails on a header or extra that [`read`] would reject.
pub fn write(header: &Header, extras: Extras, payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    check_header(header)?;
    let Extras { profile, alpha } = extras;
    if let Some(p) = profile {
        crate::icc::check(p).map_err(FormatError::BadProfile)?;
    }
    if let Some(a) = alpha {
        check_alpha_len(a.len()).map_err(FormatError::BadAlpha)?;
        if u32::try_from(a.len()).is_err() {
            return Err(FormatError::BadAlpha("it is longer than 4 GiB"));
        }
    }
    let extra: usize = [profile, alpha]
        .iter()
        .flatten()
        .map(|e| LEN_LEN + e.len())
        .sum();
    let mut out = Vec::with_capacity(HEADER_LEN + extra + payload.len() + CRC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.model as u8);
    out.extend_from_slice(&header.weights_hash.to_le_bytes());
    // check_header bounds both sides by MAX_SIDE, which fits 16 bits.
    out.extend_from_slice(&(header.width as u16).to_le_bytes());
    out.extend_from_slice(&(header.height as u16).to_le_bytes());
    let rgb = if header.channels == 3 { FORMAT_RGB } else { 0 };
    let deep = if header.bit_depth == 16 {
        FORMAT_16BIT
    } else {
        0
    };
    let tagged = if profile.is_some() { FORMAT_PROFILE } else { 0 };
    let clear = if alpha.is_some() { FORMAT_ALPHA } else { 0 };
    out.push(rgb | deep | tagged | clear);
    out.extend_from_slice(&header.quality_q8.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    // Both lengths were checked to fit 32 bits (icc::check ties a profile's to its own 32-bit
    // size field).
    for e in [profile, alpha].into_iter().flatten() {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out.extend_from_slice(payload);
    Ok(seal(out))
}

/// Parses and checks a whole stream of either version.
///
/// Checks run in this order, so the first problem found is the one reported: magic, version,
/// the header (and, in version 1, the section table and section lengths) present, CRC32, then
/// the meaning of the header fields.
pub fn read(bytes: &[u8]) -> Result<Stream<'_>, FormatError> {
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            FormatError::Truncated {
                what: "the magic",
                needed: MAGIC.len() as u64,
                have: bytes.len() as u64,
            }
        } else {
            FormatError::BadMagic
        });
    }
    if bytes[..4] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = *bytes.get(4).ok_or(FormatError::Truncated {
        what: "the version",
        needed: 5,
        have: bytes.len() as u64,
    })?;
    match version {
        1 => v1::read(bytes),
        VERSION => read_v2(bytes),
        v => Err(FormatError::UnsupportedVersion(v)),
    }
}

fn read_v2(bytes: &[u8]) -> Result<Stream<'_>, FormatError> {
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(FormatError::Truncated {
            what: "the header",
            needed: (HEADER_LEN + CRC_LEN) as u64,
            have: bytes.len() as u64,
        });
    }
    let end = bytes.len() - CRC_LEN;
    let crc = check_crc(bytes, end)?;
    let format = bytes[18];
    if format & !(FORMAT_RGB | FORMAT_16BIT | FORMAT_PROFILE | FORMAT_ALPHA) != 0 {
        return Err(FormatError::ReservedFlags(format));
    }
    let model_id = u16::from(bytes[5]);
    let header = Header {
        model: ModelId::from_u16(model_id).ok_or(FormatError::UnknownModel(model_id))?,
        weights_hash: u64::from_le_bytes(le(bytes, 6)),
        width: u16::from_le_bytes(le(bytes, 14)).into(),
        height: u16::from_le_bytes(le(bytes, 16)).into(),
        channels: if format & FORMAT_RGB != 0 { 3 } else { 1 },
        bit_depth: if format & FORMAT_16BIT != 0 { 16 } else { 8 },
        quality_q8: u16::from_le_bytes(le(bytes, 19)),
    };
    check_header(&header)?;
    let mut at = HEADER_LEN;
    let profile = if format & FORMAT_PROFILE != 0 {
        let p = length_prefixed(bytes, &mut at, end).map_err(FormatError::BadProfile)?;
        crate::icc::check(p).map_err(FormatError::BadProfile)?;
        Some(p)
    } else {
        None
    };
    let alpha = if format & FORMAT_ALPHA != 0 {
        let a = length_prefixed(bytes, &mut at, end).map_err(FormatError::BadAlpha)?;
        check_alpha_len(a.len()).map_err(FormatError::BadAlpha)?;
        Some(a)
    } else {
        None
    };
    Ok(Stream {
        version: VERSION,
        header,
        extras: Extras { profile, alpha },
        payload: Payload::Single(&bytes[at..end]),
        crc,
    })
}

/// What the container checks of an alpha plane: that it is there. Its content (one Brotli
/// stream of exactly the image's residuals) is the decoder's to check, after the payload.
fn check_alpha_len(n: usize) -> Result<(), &'static str> {
    if n == 0 {
        return Err("it is empty");
    }
    Ok(())
}

/// The block at `*at`: a 32-bit length, then that many bytes, all before `end` (the CRC);
/// `*at` moves past it.
fn length_prefixed<'a>(
    bytes: &'a [u8],
    at: &mut usize,
    end: usize,
) -> Result<&'a [u8], &'static str> {
    let start = *at + LEN_LEN;
    // The CRC matched, so a length past the payload is a writer's error, not a cut file.
    if start > end {
        return Err("the file ends inside its length field");
    }
    let n = u64::from(u32::from_le_bytes(le(bytes, *at)));
    if start as u64 + n > end as u64 {
        return Err("its length runs past the payload");
    }
    *at = start + n as usize;
    Ok(&bytes[start..*at])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            model: ModelId::MrcV1,
            weights_hash: 0x0123_4567_89ab_cdef,
            width: 768,
            height: 512,
            channels: 3,
            bit_depth: 8,
            quality_q8: 4 * 256,
        }
    }

    fn sample() -> Vec<u8> {
        write(&header(), Extras::default(), &[9, 8, 7, 6, 5, 4, 3, 2]).unwrap()
    }

    /// Re-seals a modified stream with a correct CRC, to reach the checks behind the CRC.
    pub(super) fn reseal(mut b: Vec<u8>) -> Vec<u8> {
        let n = b.len() - CRC_LEN;
        b.truncate(n);
        seal(b)
    }

    /// `good` with bytes overwritten (`edits`: position modulo the length, value), up to 7
    /// bytes cut off its end, and resealed if `seal`: what the mutation tests feed the reader.
    pub(super) fn mutate(mut b: Vec<u8>, edits: &[(usize, u8)], cut: usize, seal: bool) -> Vec<u8> {
        for &(at, v) in edits {
            let i = at % b.len();
            b[i] = v;
        }
        b.truncate(b.len() - cut % 8);
        if seal && b.len() > CRC_LEN {
            b = reseal(b);
        }
        b
    }

    /// What `read` reported as truncated, if that was its error.
    pub(super) fn truncated(r: Result<Stream<'_>, FormatError>) -> Option<&'static str> {
        match r {
            Err(FormatError::Truncated { what, .. }) => Some(what),
            _ => None,
        }
    }

    /// `good` with `bytes` written at `at`, resealed.
    pub(super) fn patch(good: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut b = good.to_vec();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        reseal(b)
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        assert_eq!(bytes.len(), HEADER_LEN + 8 + CRC_LEN);
        let s = read(&bytes).unwrap();
        assert_eq!(s.version, 2);
        assert_eq!(s.header, header());
        assert_eq!(s.payload, Payload::Single(&[9, 8, 7, 6, 5, 4, 3, 2]));
        assert_eq!(s.payload_len(), 8);
        for (channels, bit_depth) in [(1, 8), (1, 16), (3, 16)] {
            let h = Header {
                channels,
                bit_depth,
                width: 1,
                height: 65_535,
                ..header()
            };
            assert_eq!(
                read(&write(&h, Extras::default(), &[]).unwrap())
                    .unwrap()
                    .header,
                h
            );
        }
    }

    /// The byte layout in SPEC.md, field by field.
    #[test]
    fn layout_matches_the_spec() {
        let b = sample();
        assert_eq!(&b[0..4], b"EMBR");
        assert_eq!(b[4], 2);
        assert_eq!(b[5], 1);
        assert_eq!(&b[6..14], &0x0123_4567_89ab_cdefu64.to_le_bytes());
        assert_eq!(&b[14..16], &768u16.to_le_bytes());
        assert_eq!(&b[16..18], &512u16.to_le_bytes());
        assert_eq!(b[18], 0b01);
        assert_eq!(&b[19..21], &1024u16.to_le_bytes());
        assert_eq!(&b[21..29], &[9, 8, 7, 6, 5, 4, 3, 2]);
        assert_eq!(&b[29..], &crc32fast::hash(&b[..29]).to_le_bytes());
        let gray16 = write(
            &Header {
                channels: 1,
                bit_depth: 16,
                ..header()
            },
            Extras::default(),
            &[],
        )
        .unwrap();
        assert_eq!(gray16[18], 0b10);
    }

    #[test]
    fn each_problem_has_its_own_error() {
        let good = sample();
        assert_eq!(
            read(b"GIF89a....................................."),
            Err(FormatError::BadMagic)
        );
        assert_eq!(read(b""), Err(FormatError::BadMagic));
        assert!(matches!(read(b"EMB"), Err(FormatError::Truncated { .. })));
        assert_eq!(truncated(read(b"EMBR")), Some("the version"));
        assert_eq!(truncated(read(&good[..20])), Some("the header"));
        // Truncation inside the payload moves the CRC: caught there.
        assert!(matches!(
            read(&good[..good.len() - 1]),
            Err(FormatError::CrcMismatch { .. })
        ));
        let mut v9 = good.clone();
        v9[4] = 9;
        assert_eq!(read(&v9), Err(FormatError::UnsupportedVersion(9)));
        let mut flipped = good.clone();
        flipped[24] ^= 0x10;
        assert!(matches!(
            read(&flipped),
            Err(FormatError::CrcMismatch { .. })
        ));
        let sides = [20_000u16.to_le_bytes(), 20_000u16.to_le_bytes()].concat();
        let patched: [(usize, &[u8], FormatError); 5] = [
            (5, &[99], FormatError::UnknownModel(99)),
            (
                14,
                &sides,
                FormatError::BadDimensions {
                    width: 20_000,
                    height: 20_000,
                },
            ),
            (
                16,
                &[0, 0],
                FormatError::BadDimensions {
                    width: 768,
                    height: 0,
                },
            ),
            (18, &[0x81], FormatError::ReservedFlags(0x81)),
            (
                19,
                &3000u16.to_le_bytes(),
                FormatError::BadField {
                    field: "quality",
                    value: 3000,
                },
            ),
        ];
        for (at, bytes, want) in patched {
            assert_eq!(read(&patch(&good, at, bytes)), Err(want), "at {at}");
        }
    }

    #[test]
    fn writer_rejects_what_the_reader_would() {
        let mut h = header();
        h.quality_q8 = 100;
        assert!(write(&h, Extras::default(), &[]).is_err());
        h.quality_q8 = 256;
        h.channels = 2;
        assert!(write(&h, Extras::default(), &[]).is_err());
        h.channels = 3;
        h.width = 65_536;
        assert!(write(&h, Extras::default(), &[]).is_err());
    }

    fn profile_only(p: &[u8]) -> Extras<'_> {
        Extras {
            profile: Some(p),
            alpha: None,
        }
    }

    fn with_profile() -> (Vec<u8>, Vec<u8>) {
        let profile = crate::icc::synthetic::display_p3();
        let bytes = write(&header(), profile_only(&profile), &[9, 8, 7, 6]).unwrap();
        (bytes, profile)
    }

    /// SPEC.md, *Colour profile*: format bit 2, then a 32-bit length and the profile.
    #[test]
    fn a_profile_sits_between_header_and_payload() {
        let (b, profile) = with_profile();
        let n = profile.len();
        assert_eq!(b[18], 0b101);
        assert_eq!(&b[21..25], &(n as u32).to_le_bytes());
        assert_eq!(&b[25..25 + n], &profile[..]);
        assert_eq!(&b[25 + n..29 + n], &[9, 8, 7, 6]);
        assert_eq!(b.len(), HEADER_LEN + 4 + n + 4 + CRC_LEN);
        let s = read(&b).unwrap();
        assert_eq!(s.header, header());
        assert_eq!(s.extras.profile, Some(&profile[..]));
        assert_eq!(s.payload, Payload::Single(&[9, 8, 7, 6]));
        // Without one, the stream is byte for byte what it was before profiles existed.
        assert_eq!(read(&sample()).unwrap().extras, Extras::default());
        assert_eq!(sample()[18], 0b001);
    }

    #[test]
    fn bad_profiles_are_rejected_by_writer_and_reader() {
        assert_eq!(
            write(&header(), profile_only(&[0u8; 200]), &[]),
            Err(FormatError::BadProfile("no ICC signature ('acsp')"))
        );
        let (good, profile) = with_profile();
        let n = profile.len() as u32;
        let past = || Err(FormatError::BadProfile("its length runs past the payload"));
        assert_eq!(read(&patch(&good, 21, &(n + 5).to_le_bytes())), past());
        assert_eq!(read(&patch(&good, 21, &u32::MAX.to_le_bytes())), past());
        // A shorter claimed length leaves a profile whose size field disagrees.
        assert_eq!(
            read(&patch(&good, 21, &(n - 4).to_le_bytes())),
            Err(FormatError::BadProfile(
                "its size field does not match its length"
            ))
        );
        // The flag set on a file too short for the length field.
        let bare = write(&header(), Extras::default(), &[]).unwrap();
        assert_eq!(
            read(&patch(&bare, 18, &[0b101])),
            Err(FormatError::BadProfile(
                "the file ends inside its length field"
            ))
        );
    }

    /// A stream with an alpha plane (a small disc), and with a colour profile in front of it if
    /// `profiled`; also the plane.
    fn with_alpha(profiled: bool) -> (Vec<u8>, Vec<u8>) {
        let profile = crate::icc::synthetic::display_p3();
        let samples: Vec<u16> = (0..64u16)
            .map(|i| if i % 8 < 4 { 255 } else { 0 })
            .collect();
        let alpha = crate::alpha::pack(&samples, 8, 8);
        let extras = Extras {
            profile: profiled.then_some(&profile[..]),
            alpha: Some(&alpha),
        };
        (write(&header(), extras, &[9, 8, 7, 6]).unwrap(), alpha)
    }

    /// SPEC.md, *Alpha plane*: format bit 3, then a 32-bit length and the plane, after the
    /// profile when there is one.
    #[test]
    fn an_alpha_plane_follows_the_profile() {
        let (b, alpha) = with_alpha(false);
        let n = alpha.len();
        assert_eq!(b[18], 0b1001);
        assert_eq!(&b[21..25], &(n as u32).to_le_bytes());
        assert_eq!(&b[25..25 + n], &alpha[..]);
        assert_eq!(&b[25 + n..29 + n], &[9, 8, 7, 6]);
        let s = read(&b).unwrap();
        assert_eq!(s.extras.alpha, Some(&alpha[..]));
        assert_eq!(s.extras.profile, None);
        assert_eq!(s.payload, Payload::Single(&[9, 8, 7, 6]));

        let (b, _) = with_alpha(true);
        let p = crate::icc::synthetic::display_p3().len();
        assert_eq!(b[18], 0b1101);
        assert_eq!(&b[25 + p..29 + p], &(n as u32).to_le_bytes());
        assert_eq!(&b[29 + p..29 + p + n], &alpha[..]);
        let s = read(&b).unwrap();
        assert_eq!(s.extras.alpha, Some(&alpha[..]));
        assert_eq!(s.extras.profile.map(<[u8]>::len), Some(p));
        assert_eq!(b.len(), HEADER_LEN + 4 + p + 4 + n + 4 + CRC_LEN);
    }

    #[test]
    fn bad_alpha_planes_are_rejected_by_writer_and_reader() {
        let empty = Extras {
            profile: None,
            alpha: Some(&[]),
        };
        assert_eq!(
            write(&header(), empty, &[]),
            Err(FormatError::BadAlpha("it is empty"))
        );
        let (good, alpha) = with_alpha(false);
        let n = alpha.len() as u32;
        assert_eq!(
            read(&patch(&good, 21, &(n + 5).to_le_bytes())),
            Err(FormatError::BadAlpha("its length runs past the payload"))
        );
        assert_eq!(
            read(&patch(&good, 21, &0u32.to_le_bytes())),
            Err(FormatError::BadAlpha("it is empty"))
        );
        let bare = write(&header(), Extras::default(), &[]).unwrap();
        assert_eq!(
            read(&patch(&bare, 18, &[0b1001])),
            Err(FormatError::BadAlpha(
                "the file ends inside its length field"
            ))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&bytes);
        }

        #[test]
        fn mutated_streams_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>(), seal in any::<bool>(), extras in 0..4usize) {
            let good = match extras {
                0 => sample(),
                1 => with_profile().0,
                2 => with_alpha(false).0,
                _ => with_alpha(true).0,
            };
            let b = mutate(good, &edits, cut, seal);
            if let Ok(s) = read(&b) {
                // Whatever parses as version 2 is exactly what the writer makes of it.
                if let Payload::Single(data) = s.payload {
                    prop_assert_eq!(write(&s.header, s.extras, data).unwrap(), b);
                }
            }
        }
    }
}
