//! `ember`: encode, decode, inspect, evaluate and benchmark Ember images.
//!
//! Commands that need no model run here; the others continue in `ember-codec`, installed beside
//! this binary, with the same arguments (the crate documentation says why).

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: cli::Cli = cli::args::parse_or_exit("ember");
    match cli::run_without_model(&cli.command) {
        Some(result) => cli::finish(result),
        None => hand_over(),
    }
}

/// Replaces this process by `ember-codec` with the same arguments (on Unix; elsewhere runs it
/// and passes its exit status on).
fn hand_over() -> ExitCode {
    let codec = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(format!("ember-codec{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => return cli::finish(Err(format!("cannot locate this binary: {e}"))),
    };
    let mut command = std::process::Command::new(&codec);
    command.args(std::env::args_os().skip(1));
    // The transforms allocate and free tensors of tens of MB at every layer, which glibc maps
    // and unmaps each time, so the kernel faults every page of them in anew. Backed by
    // transparent huge pages (where the system offers them on request, as Debian's default
    // `madvise` does), that is one fault per 2 MiB instead of per 4 KiB, at the same peak
    // memory. glibc reads this only at start-up, hence here; a user's own setting stands.
    if cfg!(target_os = "linux") && std::env::var_os("GLIBC_TUNABLES").is_none() {
        command.env("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1");
    }
    #[cfg(unix)]
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    #[cfg(not(unix))]
    let error = match command.status() {
        Ok(status) => return ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => e,
    };
    cli::finish(Err(format!(
        "cannot run {}, which codes images for ember and is installed beside it: {error}",
        codec.display()
    )))
}
