//! File helpers.

use std::io::{Read, Write};
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one:
/// the data goes to a temporary file in the same directory, is synced, then renamed over.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] for content produced piece by piece: `fill` writes into the temporary file
/// (buffer it if it writes small pieces), which is then synced and renamed over `path`.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "output path has no file name",
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole file of at most `max` bytes. A larger file is an `InvalidData` error before
/// anything of its size is allocated (the read itself stops at `max + 1` bytes, so a file that
/// grows meanwhile cannot slip past).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let len = meta.len();
    if len > max {
        return Err(too_large(max, len));
    }
    read_all_bounded(file, len as usize, max)
}

/// Reads `reader` to its end (standard input, say), refusing more than `max` bytes the way
/// [`read_bounded`] does; `expected` is the capacity to start with.
pub fn read_all_bounded(reader: impl Read, expected: usize, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(expected);
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max, bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_large(max: u64, len: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{len} bytes is larger than the {max} bytes allowed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounded_refuses_large_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, &[7u8; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap(), vec![7u8; 100]);
        let err = read_bounded(&path, 99).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("100 bytes"), "{err}");
        assert!(read_bounded(dir.path(), 1000).is_err());
        assert!(read_bounded(&dir.path().join("missing"), 1000).is_err());
    }
}
