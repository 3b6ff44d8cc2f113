//! `portcullis`: parse the command line, run it, print the error chain, exit non-zero.

/// mimalloc rather than glibc's malloc: a message passes through many short-lived buffers
/// (SMTP, MIME, S/MIME, the queue); measured 4–7 % more S/MIME messages/s on this
/// workload (benches/smime_engine.rs, which uses the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = portcullis::cli::Cli::from_env();
    match portcullis::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::exit(2);
        }
    }
}
