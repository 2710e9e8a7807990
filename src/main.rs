//! The `archscope` binary: a thin shell over the library (see `cli.rs`).

mod cli;

// mimalloc: analysing a 100k-layer graph makes millions of small allocations; glibc's allocator
// spent most of that time consolidating free lists (measured in docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(cli::main());
}
