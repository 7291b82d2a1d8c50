//! The `syncproof` binary: parse the command line, run it, return an exit code.

fn main() -> syncproof::cli::ExitCode {
    syncproof::cli::main()
}
