//! `portcullis`: parse the command line, run it, print the error chain, exit non-zero.

/// mimalloc rather than glibc's malloc: a message passes through many short-lived buffers
/// (SMTP, MIME, S/MIME, the queue); measured 4–7 % more S/MIME messages/s on this
/// workload (benches/smime_engine.rs, which uses the same allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    quiet_on_closed_stdout();
    let cli = portcullis::cli::Cli::from_env();
    match portcullis::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::exit(2);
        }
    }
}

/// `portcullis eval … | head`: when the reader of standard output goes away, stop quietly
/// with the status of a broken pipe (141), as Unix tools do, instead of a panic report.
/// (`println!` panics on EPIPE; restoring SIGPIPE would need `unsafe`, which the workspace
/// forbids.) Every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
