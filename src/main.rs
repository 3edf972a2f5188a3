/// Counts what the process holds, so a run past its memory budget stops cleanly
/// (`meshsim::allocator`).
#[global_allocator]
static ALLOCATOR: meshsim::allocator::Counting = meshsim::allocator::Counting;

fn main() -> std::process::ExitCode {
    meshsim::cli::main()
}
