//! The `archscope` binary: the library's command line (`archscope::cli`, in `src/cli/`), with
//! the process's allocator and exit code.

// mimalloc: analysing a 100k-layer graph makes millions of small allocations; glibc's allocator
// spent most of that time consolidating free lists (measured in docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(archscope::cli::main());
}
