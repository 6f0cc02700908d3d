fn main() -> std::process::ExitCode {
    capsule::cli::main()
}
