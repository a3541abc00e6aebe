//! The `prunq` command: the library's `cli` module on this process's arguments.

fn main() -> std::process::ExitCode {
    prunq::cli::main()
}
