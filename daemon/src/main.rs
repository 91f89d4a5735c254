//! The `ward` binary: see [`ward::cli`].

fn main() -> std::process::ExitCode {
    ward::cli::main()
}
