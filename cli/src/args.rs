//! Command-line parsing shared by `ember` and `ember-train`: argument errors as one line.
//!
//! clap's own error is a paragraph (the error, a tip, the usage and a pointer to `--help`) with
//! exit status 2. Both binaries promise one line per error on stderr, so a usage error prints
//! clap's first line, prefixed like every other error, and the pointer to `--help`. The status
//! stays 2, which tells a script "bad invocation" apart from a failed run (1). Help and version
//! requests print as clap formats them.

use clap::Parser;
use clap::error::ErrorKind;

/// Parses the process arguments into `T`, or exits: 0 after `--help`/`--version`, 2 after one
/// line naming a usage error.
pub fn parse_or_exit<T: Parser>(program: &str) -> T {
    T::try_parse().unwrap_or_else(|e| exit_with(program, e))
}

fn exit_with(program: &str, e: clap::Error) -> ! {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    eprintln!("{}", one_line(program, &e));
    std::process::exit(2)
}

/// `PROGRAM: error: WHAT (see 'PROGRAM --help')`, WHAT being clap's message up to its first
/// blank line (the usage and tips after it are left out), its lines joined: a missing argument
/// is named on the line below the message.
fn one_line(program: &str, e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let what: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let what = what.join(" ");
    let what = what.strip_prefix("error: ").unwrap_or(&what);
    format!("{program}: error: {what} (see '{program} --help')")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long)]
        quality: f32,
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_problem() {
        for (args, needle) in [
            (vec!["t", "--quality", "high"], "invalid value 'high'"),
            (vec!["t"], "--quality"),
            (
                vec!["t", "--quality", "1", "--bogus"],
                "unexpected argument '--bogus'",
            ),
        ] {
            let e = Cli::try_parse_from(&args).unwrap_err();
            let line = one_line("ember", &e);
            assert!(!line.contains('\n'), "{line:?}");
            assert!(line.starts_with("ember: error: "), "{line}");
            assert!(line.contains(needle), "{args:?}: {line}");
            assert!(line.ends_with("(see 'ember --help')"), "{line}");
        }
    }
}
