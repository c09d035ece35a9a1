//! `ember-codec`: the `ember` commands that code images ([`codec::commands`]). `ember` hands
//! them here with their arguments unchanged; run directly, it takes every `ember` command.

fn main() -> std::process::ExitCode {
    codec::commands::main()
}
