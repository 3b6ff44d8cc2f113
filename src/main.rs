//! `portcullis`: parse the command line, run it, print the error chain, exit non-zero.

use clap::Parser;

fn main() {
    let cli = portcullis::cli::Cli::parse();
    match portcullis::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::exit(2);
        }
    }
}
