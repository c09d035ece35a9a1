//! Version 1 of the format, read-only: what Ember wrote until version 2. A 32-byte header,
//! a table of sections (one per entropy-coded part, each with its own length), the payloads,
//! a CRC32. `bitstream-spec/SPEC.md` keeps its layout as an appendix.

use super::{CRC_LEN, FormatError, Header, Payload, Stream, check_crc, check_header, le};
use crate::ModelId;

/// Bytes of the version 1 fixed header, magic included.
pub const HEADER_LEN: usize = 32;
/// Bytes of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 6;

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

/// One section of a parsed version 1 stream, borrowed from the input bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    pub kind: SectionKind,
    /// Slice number for checkerboard sections; 0 for the hyper-latent.
    pub index: u8,
    pub data: &'a [u8],
}

/// Parses a version 1 stream whose magic and version [`super::read`] has checked.
pub(super) fn read(bytes: &[u8]) -> Result<Stream<'_>, FormatError> {
    let have = bytes.len() as u64;
    let truncated = |what, needed: usize| FormatError::Truncated {
        what,
        needed: needed as u64,
        have,
    };
    if bytes.len() < HEADER_LEN + CRC_LEN {
        return Err(truncated("the header", HEADER_LEN + CRC_LEN));
    }
    let count = usize::from(u16::from_le_bytes(le(bytes, 30)));
    let table_end = HEADER_LEN + SECTION_ENTRY_LEN * count;
    if bytes.len() < table_end + CRC_LEN {
        return Err(truncated("the section table", table_end + CRC_LEN));
    }
    let payload_limit = bytes.len() - CRC_LEN;
    let length = |i: usize| {
        u64::from(u32::from_le_bytes(le(
            bytes,
            HEADER_LEN + SECTION_ENTRY_LEN * i + 2,
        )))
    };
    let mut raw_sections = Vec::with_capacity(count);
    let mut pos = table_end as u64;
    for i in 0..count {
        let entry = HEADER_LEN + SECTION_ENTRY_LEN * i;
        let end = pos + length(i);
        if end > payload_limit as u64 {
            let needed = (i..count).map(length).sum::<u64>() + pos + CRC_LEN as u64;
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
    let crc = check_crc(bytes, payload_limit)?;
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
        version: 1,
        header,
        extras: super::Extras::default(),
        payload: Payload::Sections {
            sections,
            pad_right: bytes[28],
            pad_bottom: bytes[29],
        },
        crc,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{mutate, patch, truncated};
    use super::super::{read, seal};
    use super::*;
    use proptest::prelude::*;

    /// A version 1 writer, for tests only: Ember no longer writes this version.
    fn write(h: &Header, pads: (u8, u8), sections: &[Section<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"EMBR");
        out.push(1);
        out.push(0);
        out.extend_from_slice(&(h.model as u16).to_le_bytes());
        out.extend_from_slice(&h.weights_hash.to_le_bytes());
        out.extend_from_slice(&h.width.to_le_bytes());
        out.extend_from_slice(&h.height.to_le_bytes());
        out.extend_from_slice(&[h.channels, h.bit_depth]);
        out.extend_from_slice(&h.quality_q8.to_le_bytes());
        out.extend_from_slice(&[pads.0, pads.1]);
        out.extend_from_slice(&(sections.len() as u16).to_le_bytes());
        for s in sections {
            out.extend_from_slice(&[s.kind as u8, s.index]);
            out.extend_from_slice(&(s.data.len() as u32).to_le_bytes());
        }
        for s in sections {
            out.extend_from_slice(s.data);
        }
        seal(out)
    }

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

    const Z: [u8; 4] = [1, 2, 3, 4];
    const A: [u8; 10] = [9; 10];

    fn sections() -> [Section<'static>; 3] {
        [
            Section {
                kind: SectionKind::Hyper,
                index: 0,
                data: &Z,
            },
            Section {
                kind: SectionKind::Anchors,
                index: 0,
                data: &A,
            },
            Section {
                kind: SectionKind::NonAnchors,
                index: 0,
                data: &[],
            },
        ]
    }

    fn sample() -> Vec<u8> {
        write(&header(), (0, 0), &sections())
    }

    /// The layout of SPEC.md's version 1 appendix, field by field, as the reader sees it.
    #[test]
    fn reads_the_spec_layout() {
        let b = sample();
        assert_eq!(b.len(), HEADER_LEN + 3 * SECTION_ENTRY_LEN + 14 + CRC_LEN);
        assert_eq!(&b[16..20], &768u32.to_le_bytes());
        assert_eq!(&b[30..32], &[3, 0]);
        assert_eq!(&b[38..44], &[1, 0, 10, 0, 0, 0]);
        let s = read(&b).unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(s.header, header());
        assert_eq!(
            s.payload,
            Payload::Sections {
                sections: sections().to_vec(),
                pad_right: 0,
                pad_bottom: 0
            }
        );
        assert_eq!(s.payload_len(), 14);
        let padded = write(&header(), (47, 31), &sections());
        assert!(matches!(
            read(&padded).unwrap().payload,
            Payload::Sections {
                pad_right: 47,
                pad_bottom: 31,
                ..
            }
        ));
    }

    #[test]
    fn each_problem_has_its_own_error() {
        let good = sample();
        assert_eq!(truncated(read(&good[..20])), Some("the header"));
        assert_eq!(truncated(read(&good[..40])), Some("the section table"));
        assert!(matches!(
            read(&good[..good.len() - 1]),
            Err(FormatError::SectionPastEnd { section: 1, .. })
        ));
        let mut longer = good.clone();
        longer.insert(good.len() - 4, 0);
        assert_eq!(read(&longer), Err(FormatError::TrailingBytes(1)));
        let mut flipped = good.clone();
        flipped[52] ^= 0x10;
        assert!(matches!(
            read(&flipped),
            Err(FormatError::CrcMismatch { .. })
        ));
        let patched: [(usize, &[u8], FormatError); 5] = [
            (6, &[99], FormatError::UnknownModel(99)),
            (
                16,
                &65_536u32.to_le_bytes(),
                FormatError::BadDimensions {
                    width: 65_536,
                    height: 512,
                },
            ),
            (
                38,
                &[7],
                FormatError::UnknownSection {
                    section: 1,
                    kind: 7,
                },
            ),
            (5, &[1], FormatError::ReservedFlags(1)),
            (
                25,
                &[12],
                FormatError::BadField {
                    field: "bit depth",
                    value: 12,
                },
            ),
        ];
        for (at, bytes, want) in patched {
            assert_eq!(read(&patch(&good, at, bytes)), Err(want), "at {at}");
        }
    }

    #[test]
    fn claimed_sizes_are_not_trusted() {
        // A header claiming 65535 sections, each of 4 GiB, in a 40-byte file.
        let mut b = sample()[..HEADER_LEN].to_vec();
        b[30..32].copy_from_slice(&u16::MAX.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0]);
        assert_eq!(truncated(read(&b)), Some("the section table"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn mutated_streams_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>(), seal in any::<bool>()) {
            let b = mutate(sample(), &edits, cut, seal);
            if let Ok(s) = read(&b) {
                // Whatever parses as version 1 is exactly what the writer makes of it.
                if let Payload::Sections { sections, pad_right, pad_bottom } = s.payload {
                    prop_assert_eq!(write(&s.header, (pad_right, pad_bottom), &sections), b);
                }
            }
        }
    }
}
