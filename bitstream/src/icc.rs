//! ICC colour profiles: the few facts about them that coding needs.
//!
//! A profile says what an image's RGB numbers mean. Ember codes the numbers, so without the
//! profile a wide-gamut photo (Display P3 from a phone, Adobe RGB from a camera) decodes to
//! the right numbers and the wrong colours: every viewer then assumes sRGB. So a profile is
//! carried in the stream (`bitstream-spec/SPEC.md`, *Colour profile*) and written into the
//! decoded PNG. An sRGB profile is the exception: it says what a file without a profile means
//! anyway, and it is large (the common IEC 61966-2.1 profile is 3,144 bytes, a third of a
//! small image's stream), so [`is_srgb`] recognizes it and the encoder leaves it out.
//!
//! Only the profile header, tag table, colorant tags and tone curves are read (ICC.1:2010,
//! sections 7 and 10); nothing here converts colours.

/// Bytes of the fixed profile header, before the tag table.
const HEADER: usize = 128;

fn be32(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?))
}

/// An `s15Fixed16Number` at `at`.
fn fixed(p: &[u8], at: usize) -> Option<f64> {
    Some(f64::from(be32(p, at)? as i32) / 65536.0)
}

/// Checks that `p` is shaped like an ICC profile: the 128-byte header, the `acsp` signature
/// and a declared size equal to its length. The stream's reader applies the same check, so a
/// corrupt profile cannot pass the CRC by accident of its length field.
pub fn check(p: &[u8]) -> Result<(), &'static str> {
    if p.len() < HEADER + 4 {
        return Err("shorter than an ICC header and tag count");
    }
    if &p[36..40] != b"acsp" {
        return Err("no ICC signature ('acsp')");
    }
    if be32(p, 0) != Some(p.len() as u32) {
        return Err("its size field does not match its length");
    }
    Ok(())
}

/// The data of tag `sig`, bounds-checked.
fn tag<'a>(p: &'a [u8], sig: &[u8; 4]) -> Option<&'a [u8]> {
    let count = be32(p, HEADER)? as usize;
    (0..count.min(1024)).find_map(|i| {
        let at = HEADER + 4 + 12 * i;
        if p.get(at..at + 4)? != sig {
            return None;
        }
        let (offset, size) = (be32(p, at + 4)? as usize, be32(p, at + 8)? as usize);
        p.get(offset..offset.checked_add(size)?)
    })
}

/// An `XYZType` tag's first value.
fn xyz(p: &[u8], sig: &[u8; 4]) -> Option<[f64; 3]> {
    let t = tag(p, sig)?;
    if t.get(..4)? != b"XYZ " {
        return None;
    }
    Some([fixed(t, 8)?, fixed(t, 12)?, fixed(t, 16)?])
}

/// A tone curve (`curv` or `para`), as a function from encoded to linear values in `[0, 1]`.
fn curve(p: &[u8], sig: &[u8; 4]) -> Option<Box<dyn Fn(f64) -> f64>> {
    let t = tag(p, sig)?;
    match t.get(..4)? {
        b"curv" => {
            let n = be32(t, 8)? as usize;
            match n {
                0 => Some(Box::new(|x| x)),
                1 => {
                    let g = f64::from(be16(t, 12)?) / 256.0;
                    Some(Box::new(move |x: f64| x.powf(g)))
                }
                _ => {
                    let table: Vec<f64> = (0..n)
                        .map(|i| be16(t, 12 + 2 * i).map(|v| f64::from(v) / 65535.0))
                        .collect::<Option<_>>()?;
                    Some(Box::new(move |x: f64| {
                        let pos = x.clamp(0.0, 1.0) * (n - 1) as f64;
                        let i = (pos.floor() as usize).min(n - 2);
                        let f = pos - i as f64;
                        table[i] * (1.0 - f) + table[i + 1] * f
                    }))
                }
            }
        }
        b"para" => {
            let kind = be16(t, 8)?;
            let count = [1, 3, 4, 5, 7].get(usize::from(kind)).copied()?;
            let q: Vec<f64> = (0..count)
                .map(|i| fixed(t, 12 + 4 * i))
                .collect::<Option<_>>()?;
            // Each kind extends the previous one (ICC.1:2010, table 65).
            let (g, a, b) = (q[0], *q.get(1).unwrap_or(&1.0), *q.get(2).unwrap_or(&0.0));
            Some(Box::new(move |x: f64| {
                let power = |x: f64| (a * x + b).max(0.0).powf(g);
                match kind {
                    0 => x.powf(g),
                    1 if x >= -b / a => power(x),
                    1 => 0.0,
                    2 if x >= -b / a => power(x) + q[3],
                    2 => q[3],
                    3 if x >= q[4] => power(x),
                    3 => q[3] * x,
                    _ if x >= q[4] => power(x) + q[5],
                    _ => q[3] * x + q[6],
                }
            }))
        }
        _ => None,
    }
}

/// The sRGB primaries adapted to the D50 connection space, as sRGB profiles store them in
/// `rXYZ`, `gXYZ`, `bXYZ` (IEC 61966-2-1 with the Bradford transform).
const SRGB_COLORANTS: [(&[u8; 4], [f64; 3]); 3] = [
    (b"rXYZ", [0.4361, 0.2225, 0.0139]),
    (b"gXYZ", [0.3851, 0.7169, 0.0971]),
    (b"bXYZ", [0.1431, 0.0606, 0.7141]),
];

/// The sRGB transfer function, encoded to linear.
fn srgb_eotf(x: f64) -> f64 {
    if x <= 0.04045 {
        x / 12.92
    } else {
        ((x + 0.055) / 1.055).powf(2.4)
    }
}

/// Whether `p` is an sRGB profile: an RGB matrix/TRC profile whose colorants are sRGB's
/// (within 0.002, which covers the rounding of the profiles in circulation) and whose three
/// tone curves follow the sRGB curve within 0.001 everywhere (a plain 2.2 gamma, which
/// differs by up to 0.004 in the shadows, is not sRGB). Anything this does not recognize is
/// treated as a real profile and kept.
pub fn is_srgb(p: &[u8]) -> bool {
    if check(p).is_err() || &p[16..20] != b"RGB " || &p[20..24] != b"XYZ " {
        return false;
    }
    let colorants = SRGB_COLORANTS.iter().all(|(sig, want)| {
        xyz(p, sig).is_some_and(|v| v.iter().zip(want).all(|(a, b)| (a - b).abs() < 0.002))
    });
    colorants
        && [b"rTRC", b"gTRC", b"bTRC"].iter().all(|sig| {
            curve(p, sig).is_some_and(|f| {
                (0..=64).all(|k| {
                    let x = f64::from(k) / 64.0;
                    (f(x) - srgb_eotf(x)).abs() < 0.001
                })
            })
        })
}

/// The profile's description tag (`desc`, ICC v2 text or v4 multi-localized), if readable.
fn description(p: &[u8]) -> Option<String> {
    let t = tag(p, b"desc")?;
    let text = match t.get(..4)? {
        b"desc" => {
            let n = be32(t, 8)? as usize;
            String::from_utf8_lossy(t.get(12..12 + n)?).into_owned()
        }
        b"mluc" if be32(t, 8)? > 0 => {
            let (len, offset) = (be32(t, 20)? as usize, be32(t, 24)? as usize);
            let units: Vec<u16> = t
                .get(offset..offset.checked_add(len)?)?
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => return None,
    };
    let clean: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_string())
}

/// One line for `ember info`: description, colour space and size (of any bytes: the fuzzer
/// found that a profile shorter than its colour-space field used to panic here).
pub fn describe(p: &[u8]) -> String {
    let space = p.get(16..20).map_or("unknown".into(), |s| {
        String::from_utf8_lossy(s).trim().to_string()
    });
    match description(p) {
        Some(d) => format!("\"{d}\" ({space}, {} bytes)", p.len()),
        None => format!("{space}, {} bytes", p.len()),
    }
}

/// Profiles written from the standard's layout, for tests and examples that must not depend
/// on profile files (the profiles in circulation are other people's files).
pub mod synthetic {
    /// A matrix/TRC RGB display profile with these D50 colorants, one `para` tone curve of
    /// `kind` with `params` for all three channels, and description `desc` (v2 text).
    pub fn rgb(colorants: [[f64; 3]; 3], kind: u16, params: &[f64], desc: &str) -> Vec<u8> {
        let s15 = |v: f64| ((v * 65536.0).round() as i32).to_be_bytes();
        let xyz = |v: [f64; 3]| {
            let mut t = b"XYZ \0\0\0\0".to_vec();
            v.iter().for_each(|&c| t.extend(s15(c)));
            t
        };
        let mut para = b"para\0\0\0\0".to_vec();
        para.extend(kind.to_be_bytes());
        para.extend([0, 0]);
        params.iter().for_each(|&v| para.extend(s15(v)));
        let mut text = b"desc\0\0\0\0".to_vec();
        text.extend((desc.len() as u32 + 1).to_be_bytes());
        text.extend(desc.as_bytes());
        text.push(0);
        // Unicode language and count, ScriptCode code, count and its 67 bytes: all empty.
        text.extend([0u8; 4 + 4 + 2 + 1 + 67]);
        let tags: Vec<(&[u8; 4], Vec<u8>)> = vec![
            (b"desc", text),
            (b"wtpt", xyz([0.9642, 1.0, 0.8249])),
            (b"rXYZ", xyz(colorants[0])),
            (b"gXYZ", xyz(colorants[1])),
            (b"bXYZ", xyz(colorants[2])),
            (b"rTRC", para.clone()),
            (b"gTRC", para.clone()),
            (b"bTRC", para),
        ];
        let mut header = vec![0u8; 128];
        header[8] = 2; // version 2.1
        header[9] = 0x10;
        header[12..16].copy_from_slice(b"mntr");
        header[16..20].copy_from_slice(b"RGB ");
        header[20..24].copy_from_slice(b"XYZ ");
        header[36..40].copy_from_slice(b"acsp");
        let mut table = (tags.len() as u32).to_be_bytes().to_vec();
        let mut data = Vec::new();
        let start = 128 + 4 + 12 * tags.len();
        for (sig, body) in &tags {
            while data.len() % 4 != 0 {
                data.push(0);
            }
            table.extend(*sig);
            table.extend(((start + data.len()) as u32).to_be_bytes());
            table.extend((body.len() as u32).to_be_bytes());
            data.extend(body);
        }
        let mut p = [header, table, data].concat();
        let len = p.len() as u32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    /// sRGB's curve as a `para` of kind 3: γ 2.4, a 1/1.055, b 0.055/1.055, c 1/12.92, d 0.04045.
    pub const SRGB_CURVE: [f64; 5] = [2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045];

    /// An sRGB profile.
    pub fn srgb() -> Vec<u8> {
        rgb(
            super::SRGB_COLORANTS.map(|(_, v)| v),
            3,
            &SRGB_CURVE,
            "sRGB (test)",
        )
    }

    /// A Display P3 profile: P3 primaries with the D65 white, adapted to D50, sRGB's curve.
    pub fn display_p3() -> Vec<u8> {
        rgb(
            [
                [0.5151, 0.2412, -0.0011],
                [0.2920, 0.6922, 0.0419],
                [0.1571, 0.0666, 0.7841],
            ],
            3,
            &SRGB_CURVE,
            "Display P3 (test)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_is_recognized_and_others_are_not() {
        assert!(is_srgb(&synthetic::srgb()));
        assert!(!is_srgb(&synthetic::display_p3()));
        // sRGB primaries with a plain 2.2 gamma: a different curve, kept.
        let gamma = synthetic::rgb(SRGB_COLORANTS.map(|(_, v)| v), 0, &[2.2], "gamma 2.2");
        assert!(!is_srgb(&gamma));
        // The sRGB curve as a 1024-entry table, as the IEC profile stores it.
        let mut table = synthetic::srgb();
        let n = 1024usize;
        let mut curv = b"curv\0\0\0\0".to_vec();
        curv.extend((n as u32).to_be_bytes());
        for i in 0..n {
            let v = (srgb_eotf(i as f64 / (n - 1) as f64) * 65535.0).round() as u16;
            curv.extend(v.to_be_bytes());
        }
        let offset = table.len();
        table.extend(&curv);
        for i in 0..8 {
            let at = HEADER + 4 + 12 * i;
            if table[at..at + 4].ends_with(b"TRC") {
                table[at + 4..at + 8].copy_from_slice(&(offset as u32).to_be_bytes());
                table[at + 8..at + 12].copy_from_slice(&(curv.len() as u32).to_be_bytes());
            }
        }
        let len = table.len() as u32;
        table[..4].copy_from_slice(&len.to_be_bytes());
        assert!(is_srgb(&table));
    }

    #[test]
    fn check_wants_an_icc_header() {
        assert!(check(&synthetic::display_p3()).is_ok());
        assert!(check(&[0u8; 64]).is_err());
        let mut p = synthetic::display_p3();
        p[36] = b'x';
        assert!(check(&p).is_err());
        let mut p = synthetic::display_p3();
        p.push(0);
        assert_eq!(check(&p), Err("its size field does not match its length"));
    }

    #[test]
    fn describe_names_the_profile() {
        let p = synthetic::display_p3();
        assert_eq!(
            describe(&p),
            format!("\"Display P3 (test)\" (RGB, {} bytes)", p.len())
        );
    }

    /// Hostile tag tables (offsets past the end, huge counts) read as "not sRGB", never panic.
    #[test]
    fn garbage_tags_never_panic() {
        let good = synthetic::srgb();
        for at in (HEADER..HEADER + 4 + 12 * 8).step_by(3) {
            for v in [0x00, 0x7f, 0xff] {
                let mut p = good.clone();
                p[at] = v;
                let _ = is_srgb(&p);
                let _ = describe(&p);
            }
        }
    }
}
