//! Several files in one process: what `ember encode` and `ember decode` read and write.
//!
//! A coding command spends more of its wall time starting than coding a photo (loading
//! LibTorch, the model, the backend's first run), so one invocation takes any number of inputs
//! and folders and sets all of that up once. Files are coded one after another: each coding
//! already keeps every core busy (LibTorch's threads in the transforms, rayon's in the entropy
//! parameters), so coding two at once would only add their memory. A file that fails is
//! reported in one line and the others go on; the exit status says whether any failed.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

/// Where one file comes from.
pub enum Source {
    Stdin,
    File(PathBuf),
}

/// Where one file goes.
pub enum Sink {
    Stdout,
    File(PathBuf),
}

/// One file to code.
pub struct Item {
    pub source: Source,
    pub sink: Sink,
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// The whole input, refused before allocation if it is larger than `max` bytes (an
    /// `InvalidData` error, as [`crate::fsutil::read_bounded`] gives).
    pub fn read(&self, max: u64) -> std::io::Result<Vec<u8>> {
        match self {
            Source::Stdin => crate::fsutil::read_all_bounded(std::io::stdin().lock(), 0, max),
            Source::File(p) => crate::fsutil::read_bounded(p, max),
        }
    }
}

impl Sink {
    pub fn name(&self) -> String {
        match self {
            Sink::Stdout => "<stdout>".into(),
            Sink::File(p) => p.display().to_string(),
        }
    }

    /// Writes the whole output: a file atomically (readers see the old file or the new one),
    /// standard output as it comes.
    pub fn write(&self, bytes: &[u8]) -> Result<(), String> {
        let written = match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Sink::File(p) => crate::fsutil::write_atomic(p, bytes),
        };
        written.map_err(|e| format!("cannot write {}: {e}", self.name()))
    }
}

fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// The files of `dir` (not of its subfolders) whose extension is one of `extensions`, sorted.
fn files_in(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let known = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()));
        if known && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(format!(
            "{} has no .{} files",
            dir.display(),
            extensions.join("/.")
        ));
    }
    files.sort();
    Ok(files)
}

/// Pairs every input with its output. `inputs` are files, folders (their files with one of
/// `extensions`) or `-` (standard input). `output` names the one output of a single input
/// (`-`: standard output); `dir` receives `NAME.out_extension` for every input `NAME.*`.
/// Mistakes in the invocation itself (no destination, `-o` with several inputs, two inputs
/// that would write the same file, a folder without such files) are errors here, before
/// anything is coded; a missing or unreadable input file fails later, on its own.
pub fn plan(
    inputs: &[PathBuf],
    output: Option<&Path>,
    dir: Option<&Path>,
    extensions: &[&str],
    out_extension: &str,
) -> Result<Vec<Item>, String> {
    let mut sources = Vec::new();
    for input in inputs {
        if is_dash(input) {
            if sources.iter().any(|s| matches!(s, Source::Stdin)) {
                return Err("standard input ('-') can be read only once".into());
            }
            sources.push(Source::Stdin);
        } else if input.is_dir() {
            sources.extend(files_in(input, extensions)?.into_iter().map(Source::File));
        } else {
            sources.push(Source::File(input.clone()));
        }
    }
    match (output, dir) {
        (Some(output), None) => {
            let [source] = <[Source; 1]>::try_from(sources).map_err(|s| {
                format!(
                    "-o names one output but there are {} inputs; give a folder with -d DIR instead",
                    s.len()
                )
            })?;
            let sink = if is_dash(output) {
                Sink::Stdout
            } else {
                Sink::File(output.to_path_buf())
            };
            Ok(vec![Item { source, sink }])
        }
        (None, Some(dir)) => {
            let mut items: Vec<Item> = Vec::with_capacity(sources.len());
            for source in sources {
                let Source::File(path) = &source else {
                    return Err(
                        "standard input has no name to write under -d; use -o FILE or -o -".into(),
                    );
                };
                let stem = path
                    .file_stem()
                    .ok_or_else(|| format!("{} has no file name", path.display()))?;
                let out = dir.join(stem).with_extension(out_extension);
                if let Some(twin) = items
                    .iter()
                    .find(|i| matches!(&i.sink, Sink::File(o) if *o == out))
                {
                    return Err(format!(
                        "{} and {} would both be written to {}",
                        twin.source.name(),
                        path.display(),
                        out.display()
                    ));
                }
                items.push(Item {
                    source,
                    sink: Sink::File(out),
                });
            }
            Ok(items)
        }
        (Some(_), Some(_)) => Err("give -o FILE or -d DIR, not both".into()),
        (None, None) => Err(
            "say where to write: -o FILE for one input (- for standard output), or -d DIR".into(),
        ),
    }
}

/// Codes every item in turn: its input read by `read` (or, for the first, given already as
/// `first`), then `code`, which writes the output and returns the line that reports it.
/// Failures are reported as they come and do not stop the rest ([`Progress`]).
pub fn code_each<T>(
    items: &[Item],
    mut first: Option<T>,
    read: impl Fn(&Item) -> Result<T, String>,
    mut code: impl FnMut(&Item, T) -> Result<String, String>,
) -> Result<(), String> {
    let mut progress = Progress::new(items);
    for item in items {
        let input = match first.take() {
            Some(input) => Ok(input),
            None => read(item),
        };
        progress.done(input.and_then(|input| code(item, input)));
    }
    progress.finish()
}

/// Reports of a batch: one line per file, a progress bar on a terminal when there are several,
/// and at the end the count of failures.
struct Progress {
    bar: Option<ProgressBar>,
    /// Reports go to stderr when stdout carries the data.
    to_stderr: bool,
    total: usize,
    failed: usize,
    /// The error of a single file, which is the command's error.
    error: Option<String>,
}

impl Progress {
    fn new(items: &[Item]) -> Self {
        let total = items.len();
        let bar = (total > 1 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} files, {elapsed} (eta {eta})")
                    .expect("a valid template"),
            );
            bar
        });
        Self {
            bar,
            to_stderr: items.iter().any(|i| matches!(i.sink, Sink::Stdout)),
            total,
            failed: 0,
            error: None,
        }
    }

    /// One file done: its report, or its error (printed at once when there are several).
    fn done(&mut self, result: Result<String, String>) {
        match result {
            Ok(line) => match &self.bar {
                Some(bar) => bar.println(line),
                None if self.to_stderr => eprintln!("{line}"),
                None => println!("{line}"),
            },
            Err(e) if self.total == 1 => self.error = Some(e),
            Err(e) => {
                self.failed += 1;
                let line = format!("ember: error: {e}");
                match &self.bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// `Ok` if every file was coded; else the single file's error, or how many of several
    /// failed (each named on its own line already).
    fn finish(self) -> Result<(), String> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        match (self.error, self.failed) {
            (Some(e), _) => Err(e),
            (None, 0) => Ok(()),
            (None, n) => Err(format!("{n} of {} files failed", self.total)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[Item]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|i| (i.source.name(), i.sink.name()))
            .collect()
    }

    #[test]
    fn inputs_and_folders_pair_with_outputs_and_mistakes_are_refused_up_front() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in ["b.png", "a.JPG", "notes.txt", "c.ppm"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/b.png"), b"x").unwrap();
        let exts = ["png", "jpg", "ppm"];
        let out = Path::new("out");
        let p = |s: &str| d.join(s).display().to_string();
        let o = |s: &str| out.join(s).display().to_string();

        // A folder: its images, sorted, not its subfolders' or other files.
        let items = plan(&[d.to_path_buf()], None, Some(out), &exts, "ember").unwrap();
        assert_eq!(
            names(&items),
            [
                (p("a.JPG"), o("a.ember")),
                (p("b.png"), o("b.ember")),
                (p("c.ppm"), o("c.ember"))
            ]
        );
        // One input, one output; dashes are the standard streams.
        let one = plan(
            &[d.join("b.png")],
            Some(Path::new("x.ember")),
            None,
            &exts,
            "ember",
        );
        assert_eq!(names(&one.unwrap()), [(p("b.png"), "x.ember".into())]);
        let pipe = plan(&["-".into()], Some(Path::new("-")), None, &exts, "ember");
        assert_eq!(
            names(&pipe.unwrap()),
            [("<stdin>".into(), "<stdout>".into())]
        );
        // A missing file is planned; it fails when it is read, on its own.
        assert!(plan(&["missing.png".into()], None, Some(out), &exts, "ember").is_ok());

        for (inputs, output, dir, needle) in [
            (vec![d.to_path_buf()], Some("x"), None, "3 inputs"),
            (vec![d.join("b.png")], None, None, "say where to write"),
            (vec![d.join("b.png")], Some("x"), Some("y"), "not both"),
            (
                vec!["-".into()],
                None,
                Some("y"),
                "standard input has no name",
            ),
            (vec!["-".into(), "-".into()], Some("x"), None, "only once"),
            (
                vec![d.join("b.png"), d.join("sub/b.png")],
                None,
                Some("y"),
                "both be written",
            ),
            (
                vec![d.join("sub"), d.join("sub")],
                None,
                Some("y"),
                "both be written",
            ),
        ] {
            let got = plan(
                &inputs,
                output.map(Path::new),
                dir.map(Path::new),
                &exts,
                "ember",
            );
            let err = got
                .err()
                .unwrap_or_else(|| panic!("{inputs:?} was accepted"));
            assert!(err.contains(needle), "{inputs:?}: {err}");
        }
        let empty = tempfile::tempdir().unwrap();
        let err = plan(
            &[empty.path().to_path_buf()],
            None,
            Some(out),
            &exts,
            "ember",
        );
        assert!(err.err().unwrap().contains("has no .png/.jpg/.ppm files"));
    }
}
