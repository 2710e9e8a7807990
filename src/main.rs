//! The `archscope` binary: a thin shell over the library (see `cli.rs`).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
