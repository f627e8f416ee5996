fn main() -> std::process::ExitCode {
    elevate::cli::main()
}
