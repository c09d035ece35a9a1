//! Replays the committed fuzzing corpus (`testdata/fuzz/TARGET/`) and every input that ever
//! crashed a target (`testdata/fuzz/crashes/TARGET/`) through the target's checks: a crash the
//! fuzzer found stays fixed, and what the corpus covers stays covered, on every `cargo test`.

use std::path::{Path, PathBuf};

fn inputs(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` over the target's corpus, which must not be empty, and over its crashes.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fuzz");
    let corpus = inputs(&root.join(target));
    assert!(
        !corpus.is_empty(),
        "no corpus for {target} in {}: scripts/fuzz.sh makes it",
        root.display()
    );
    for file in corpus
        .iter()
        .chain(&inputs(&root.join("crashes").join(target)))
    {
        let bytes = std::fs::read(file).unwrap();
        // A panic names the input it came from.
        let name = file.display().to_string();
        std::panic::catch_unwind(|| check(&bytes))
            .unwrap_or_else(|_| panic!("{target} fails on {name}"));
    }
}

#[test]
fn container_corpus_and_crashes() {
    replay("container", fuzz::container);
}

#[test]
fn decode_corpus_and_crashes() {
    replay("decode", fuzz::decode_fully);
}

#[test]
fn alpha_corpus_and_crashes() {
    replay("alpha", fuzz::alpha);
}

#[test]
fn icc_corpus_and_crashes() {
    replay("icc", fuzz::icc);
}

#[test]
fn image_corpus_and_crashes() {
    replay("image", fuzz::image);
}

/// A version 2 stream whose CRC the fuzzer broke is resealed; anything else is left alone.
#[test]
fn reseal_repairs_the_crc_of_version_2_streams_only() {
    let golden = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/golden/rgb-17x33-q4.ember"),
    )
    .unwrap();
    let mut broken = golden.clone();
    let last = broken.len() - 1;
    broken[last] ^= 0x55;
    assert!(bitstream::read(&broken).is_err());
    assert_eq!(fuzz::reseal(&broken), golden);
    let v1 = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/golden/v1/rgb-17x33-q4.ember"),
    )
    .unwrap();
    assert_eq!(fuzz::reseal(&v1), v1);
    assert_eq!(fuzz::reseal(b"EMBR"), b"EMBR");
}
