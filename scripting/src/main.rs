fn main() -> std::process::ExitCode {
    scripting::cli::main()
}
