fn main() -> std::process::ExitCode {
    meshsim::cli::main()
}
