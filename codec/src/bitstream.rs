//! Bitstream format v1: reader and writer. `bitstream-spec/SPEC.md` specifies it byte by byte;
//! this module is its only implementation, and the two must change together.
//!
//! The reader is written for hostile input: every length is checked against the bytes that are
//! actually present before it is used, sections are borrowed from the input (nothing is
//! allocated from a claimed size), and each way a file can be wrong has its own error.

use crate::zoo::ModelId;

/// The four bytes every Ember file starts with.
pub const MAGIC: [u8; 4] = *b"EMBR";
/// The format version this module reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header, magic included.
pub const HEADER_LEN: usize = 32;
/// Bytes of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 6;
/// Bytes of the trailing CRC32.
pub const CRC_LEN: usize = 4;
/// Largest width or height.
pub const MAX_SIDE: u32 = 65_535;
/// Largest pixel count, 2^28 (16384 × 16384).
pub const MAX_PIXELS: u64 = 1 << 28;
/// Quality is stored in units of 1/256: 1.0 ..= 8.0.
pub const QUALITY_RANGE_Q8: std::ops::RangeInclusive<u16> = 256..=2048;

/// What a section holds. The decoder reads sections in the order the model defines; the kind
/// and index make a stream self-describing for tools such as `ember info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// The hyper-latent ẑ, coded with the factorized prior.
    Hyper = 0,
    /// The anchor half of one channel slice's checkerboard.
    Anchors = 1,
    /// The non-anchor half of one channel slice's checkerboard.
    NonAnchors = 2,
}

impl SectionKind {
    fn from_u8(v: u8) -> Option<Self> {
        [Self::Hyper, Self::Anchors, Self::NonAnchors]
            .into_iter()
            .find(|k| *k as u8 == v)
    }
}

/// The fixed header of a stream.
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
    /// Pixels of padding added on the right and at the bottom before coding.
    pub pad_right: u8,
    pub pad_bottom: u8,
}

/// One section of a parsed stream, borrowed from the input bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    pub kind: SectionKind,
    /// Slice number for checkerboard sections; 0 for the hyper-latent.
    pub index: u8,
    pub data: &'a [u8],
}

/// A stream parsed and checked by [`read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream<'a> {
    pub header: Header,
    pub sections: Vec<Section<'a>>,
    pub crc: u32,
}

/// Everything that can be wrong with a stream. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an Ember file (bad magic bytes)")]
    BadMagic,
    #[error("unsupported format version {0} (this build reads version {VERSION})")]
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
    #[error("reserved header flags {0:#04x} are set")]
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
    #[error("cannot write: {0}")]
    Unwritable(&'static str),
}

fn known_models() -> String {
    ModelId::ALL
        .iter()
        .map(|m| format!("{} = {}", *m as u16, m.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

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

/// Serializes a stream. Fails on a header that [`read`] would reject, more than 65,535
/// sections, or a section of 4 GiB or more.
pub fn write(header: &Header, sections: &[Section<'_>]) -> Result<Vec<u8>, FormatError> {
    check_header(header)?;
    let count = u16::try_from(sections.len())
        .map_err(|_| FormatError::Unwritable("more than 65535 sections"))?;
    let payload: usize = sections.iter().map(|s| s.data.len()).sum();
    let mut out =
        Vec::with_capacity(HEADER_LEN + SECTION_ENTRY_LEN * sections.len() + payload + CRC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0); // flags
    out.extend_from_slice(&(header.model as u16).to_le_bytes());
    out.extend_from_slice(&header.weights_hash.to_le_bytes());
    out.extend_from_slice(&header.width.to_le_bytes());
    out.extend_from_slice(&header.height.to_le_bytes());
    out.push(header.channels);
    out.push(header.bit_depth);
    out.extend_from_slice(&header.quality_q8.to_le_bytes());
    out.push(header.pad_right);
    out.push(header.pad_bottom);
    out.extend_from_slice(&count.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    for s in sections {
        let len = u32::try_from(s.data.len())
            .map_err(|_| FormatError::Unwritable("a section of 4 GiB or more"))?;
        out.push(s.kind as u8);
        out.push(s.index);
        out.extend_from_slice(&len.to_le_bytes());
    }
    for s in sections {
        out.extend_from_slice(s.data);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Little-endian field access into a buffer whose length was checked beforehand.
fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N]
        .try_into()
        .expect("length checked by the caller")
}

/// Parses and checks a whole stream.
///
/// Checks run in this order, so the first problem found is the one reported: magic, version,
/// fixed header and section table present, section lengths against the file length, CRC32,
/// then the meaning of the header fields and section kinds.
pub fn read(bytes: &[u8]) -> Result<Stream<'_>, FormatError> {
    let have = bytes.len() as u64;
    let truncated = |what, needed: usize| FormatError::Truncated {
        what,
        needed: needed as u64,
        have,
    };
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) && !bytes.is_empty() {
            truncated("the magic", MAGIC.len())
        } else {
            FormatError::BadMagic
        });
    }
    if bytes[..4] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = *bytes.get(4).ok_or(truncated("the version", 5))?;
    if version != VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(truncated("the header", HEADER_LEN + CRC_LEN));
    }
    let count = usize::from(u16::from_le_bytes(le(bytes, 30)));
    let table_end = HEADER_LEN + SECTION_ENTRY_LEN * count;
    if bytes.len() < table_end + CRC_LEN {
        return Err(truncated("the section table", table_end + CRC_LEN));
    }
    let payload_limit = bytes.len() - CRC_LEN;
    let mut raw_sections = Vec::with_capacity(count);
    let mut pos = table_end as u64;
    for i in 0..count {
        let entry = HEADER_LEN + SECTION_ENTRY_LEN * i;
        let len = u64::from(u32::from_le_bytes(le(bytes, entry + 2)));
        let end = pos + len;
        if end > payload_limit as u64 {
            let needed: u64 = (i..count)
                .map(|j| {
                    u64::from(u32::from_le_bytes(le(
                        bytes,
                        HEADER_LEN + SECTION_ENTRY_LEN * j + 2,
                    )))
                })
                .sum::<u64>()
                + pos
                + CRC_LEN as u64;
            return Err(FormatError::SectionPastEnd {
                section: i,
                needed,
                have,
            });
        }
        raw_sections.push((
            bytes[entry],
            bytes[entry + 1],
            &bytes[pos as usize..end as usize],
        ));
        pos = end;
    }
    if pos < payload_limit as u64 {
        return Err(FormatError::TrailingBytes(payload_limit as u64 - pos));
    }
    let stored = u32::from_le_bytes(le(bytes, payload_limit));
    let computed = crc32fast::hash(&bytes[..payload_limit]);
    if stored != computed {
        return Err(FormatError::CrcMismatch { stored, computed });
    }
    let flags = bytes[5];
    if flags != 0 {
        return Err(FormatError::ReservedFlags(flags));
    }
    let model_id = u16::from_le_bytes(le(bytes, 6));
    let header = Header {
        model: ModelId::from_u16(model_id).ok_or(FormatError::UnknownModel(model_id))?,
        weights_hash: u64::from_le_bytes(le(bytes, 8)),
        width: u32::from_le_bytes(le(bytes, 16)),
        height: u32::from_le_bytes(le(bytes, 20)),
        channels: bytes[24],
        bit_depth: bytes[25],
        quality_q8: u16::from_le_bytes(le(bytes, 26)),
        pad_right: bytes[28],
        pad_bottom: bytes[29],
    };
    check_header(&header)?;
    let sections = raw_sections
        .into_iter()
        .enumerate()
        .map(|(section, (kind, index, data))| {
            let kind =
                SectionKind::from_u8(kind).ok_or(FormatError::UnknownSection { section, kind })?;
            Ok(Section { kind, index, data })
        })
        .collect::<Result<_, _>>()?;
    Ok(Stream {
        header,
        sections,
        crc: stored,
    })
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
            pad_right: 0,
            pad_bottom: 0,
        }
    }

    fn sample() -> Vec<u8> {
        let z = [1u8, 2, 3, 4];
        let a = [9u8; 10];
        let sections = [
            Section {
                kind: SectionKind::Hyper,
                index: 0,
                data: &z,
            },
            Section {
                kind: SectionKind::Anchors,
                index: 0,
                data: &a,
            },
            Section {
                kind: SectionKind::NonAnchors,
                index: 0,
                data: &[],
            },
        ];
        write(&header(), &sections).unwrap()
    }

    /// Re-seals a modified stream with a correct CRC, to reach the checks behind the CRC.
    fn reseal(mut b: Vec<u8>) -> Vec<u8> {
        let n = b.len() - CRC_LEN;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 3 * SECTION_ENTRY_LEN + 14 + CRC_LEN
        );
        let s = read(&bytes).unwrap();
        assert_eq!(s.header, header());
        assert_eq!(s.sections.len(), 3);
        assert_eq!(s.sections[0].data, &[1, 2, 3, 4]);
        assert_eq!(s.sections[1].data, &[9; 10]);
        assert_eq!(s.sections[2].data, &[] as &[u8]);
    }

    /// The byte layout in SPEC.md, field by field.
    #[test]
    fn layout_matches_the_spec() {
        let b = sample();
        assert_eq!(&b[0..4], b"EMBR");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 0);
        assert_eq!(&b[6..8], &[1, 0]);
        assert_eq!(&b[8..16], &0x0123_4567_89ab_cdefu64.to_le_bytes());
        assert_eq!(&b[16..20], &768u32.to_le_bytes());
        assert_eq!(&b[20..24], &512u32.to_le_bytes());
        assert_eq!(&b[24..30], &[3, 8, 0, 4, 0, 0]);
        assert_eq!(&b[30..32], &[3, 0]);
        assert_eq!(&b[32..38], &[0, 0, 4, 0, 0, 0]);
        assert_eq!(&b[38..44], &[1, 0, 10, 0, 0, 0]);
        assert_eq!(&b[44..50], &[2, 0, 0, 0, 0, 0]);
        assert_eq!(&b[50..54], &[1, 2, 3, 4]);
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
        assert!(matches!(
            read(&good[..20]),
            Err(FormatError::Truncated {
                what: "the header",
                ..
            })
        ));
        assert!(matches!(
            read(&good[..40]),
            Err(FormatError::Truncated {
                what: "the section table",
                ..
            })
        ));
        assert!(matches!(
            read(&good[..good.len() - 1]),
            Err(FormatError::SectionPastEnd { section: 1, .. })
        ));
        let mut longer = good.clone();
        longer.insert(good.len() - 4, 0);
        assert_eq!(read(&longer), Err(FormatError::TrailingBytes(1)));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(read(&v2), Err(FormatError::UnsupportedVersion(2)));
        let mut flipped = good.clone();
        flipped[52] ^= 0x10;
        assert!(matches!(
            read(&flipped),
            Err(FormatError::CrcMismatch { .. })
        ));
        let mut model = good.clone();
        model[6] = 99;
        assert_eq!(read(&reseal(model)), Err(FormatError::UnknownModel(99)));
        let mut wide = good.clone();
        wide[16..20].copy_from_slice(&65_536u32.to_le_bytes());
        assert_eq!(
            read(&reseal(wide)),
            Err(FormatError::BadDimensions {
                width: 65_536,
                height: 512
            })
        );
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&20_000u32.to_le_bytes());
        huge[20..24].copy_from_slice(&20_000u32.to_le_bytes());
        assert!(matches!(
            read(&reseal(huge)),
            Err(FormatError::BadDimensions { .. })
        ));
        let mut zero = good.clone();
        zero[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            read(&reseal(zero)),
            Err(FormatError::BadDimensions { .. })
        ));
        let mut kind = good.clone();
        kind[38] = 7;
        assert_eq!(
            read(&reseal(kind)),
            Err(FormatError::UnknownSection {
                section: 1,
                kind: 7
            })
        );
        let mut flags = good.clone();
        flags[5] = 1;
        assert_eq!(read(&reseal(flags)), Err(FormatError::ReservedFlags(1)));
        let mut depth = good;
        depth[25] = 12;
        assert_eq!(
            read(&reseal(depth)),
            Err(FormatError::BadField {
                field: "bit depth",
                value: 12
            })
        );
    }

    #[test]
    fn claimed_sizes_are_not_trusted() {
        // A header claiming 65535 sections, each of 4 GiB, in a 40-byte file.
        let mut b = sample()[..HEADER_LEN].to_vec();
        b[30..32].copy_from_slice(&u16::MAX.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]);
        assert!(matches!(
            read(&b),
            Err(FormatError::Truncated {
                what: "the section table",
                ..
            })
        ));
    }

    #[test]
    fn writer_rejects_what_the_reader_would() {
        let mut h = header();
        h.quality_q8 = 100;
        assert!(write(&h, &[]).is_err());
        h.quality_q8 = 256;
        h.channels = 2;
        assert!(write(&h, &[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&bytes);
        }

        #[test]
        fn mutated_streams_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>(), seal in any::<bool>()) {
            let mut b = sample();
            for (at, v) in edits {
                let i = at % b.len();
                b[i] = v;
            }
            b.truncate(b.len() - cut % 8);
            if seal && b.len() > CRC_LEN { b = reseal(b); }
            if let Ok(s) = read(&b) {
                // Whatever parses is exactly what the writer makes of it.
                prop_assert_eq!(write(&s.header, &s.sections).unwrap(), b);
            }
        }
    }
}
