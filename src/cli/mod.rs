//! The `portcullis` command line. Every subcommand that a script may want has `--json`.

mod bayes;
mod certs;
mod digest;
pub mod doctor;
pub mod eval;
pub mod explain;
mod lists;
mod quarantine;
mod queue;
pub(crate) mod target;
mod trust;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "Mail gateway: SMTP in, one pipeline, verdict in the dialog, durable queue, delivery out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `portcullis --version` prints: the version, the git revision it was built from,
/// the OpenSSL it runs with and the main crates it was built with.
pub fn long_version() -> String {
    format!(
        "{}\nrevision {}\n{}\ncrates: {}",
        env!("CARGO_PKG_VERSION"),
        env!("PORTCULLIS_GIT_REVISION"),
        openssl::version::version(),
        env!("PORTCULLIS_CRATE_VERSIONS"),
    )
}

impl Cli {
    /// Parse the process's arguments (`--version` with [`long_version`]).
    pub fn from_env() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let version: &'static str = Box::leak(long_version().into_boxed_str());
        let matches = Cli::command().long_version(version).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (embedded defaults without --config).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file; names the bad key and why.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Inspect and act on the delivery queue.
    Queue {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: queue::QueueAction,
    },
    /// Held messages: list, show, preview, release, delete (by id or by filter).
    Quarantine {
        /// Also accepted after the action (`quarantine list --config F`).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: quarantine::QuarantineAction,
    },
    /// The Bayesian spam filter: train, learn, eval, cross-validate, status.
    Bayes {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: bayes::BayesAction,
    },
    /// The level of trust: what was learned per domain, and operators' pins.
    Trust {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: trust::TrustAction,
    },
    /// The S/MIME certificate and key store: import, list, show, export, delete, trust-ca.
    Certs {
        /// Also accepted after the action (`certs list --config F`).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: certs::CertsAction,
    },
    /// Allow and block lists: senders (addresses, @domains, networks) always wanted or
    /// refused, for everyone or per recipient domain or address.
    Lists {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: lists::ListsAction,
    },
    /// Quarantine reports for recipients: send now, preview, set a recipient's frequency.
    Digest {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: digest::DigestAction,
    },
    /// Make the running gateway read its config file again (as SIGHUP does) and say what
    /// changed.
    Reload {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run a stored message through the pipeline of this config, keeping nothing: every
    /// stage's symbols, the verdict and the SMTP reply the client would get.
    Explain {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: explain::ExplainArgs,
    },
    /// The whole inbound pipeline on directories of ham and spam, offline (nothing learned or
    /// stored): recall, false-positive rate, ROC AUC, recall at fixed false-positive rates,
    /// verdicts, speed; `--roc FILE.svg` draws the curves.
    Eval {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: eval::EvalArgs,
    },
    /// The operator console: dashboard, quarantine, certificates, trust, queue, lists, in
    /// the terminal, through the running gateway's admin socket (data_dir/admin.sock).
    Tui {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a live installation: SMTP ports, admin socket, DNS, clamd, database, file
    /// permissions, certificate expiry, free disk; says what to fix. Exit code 1 on a
    /// failed check.
    Doctor {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List every symbol a stage can report, with default points.
    Symbols,
    /// clamd health as the gateway sees it: version, signature date, latency.
    ClamavStatus {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn load(config: &Option<PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// Run a command; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    // Everything the gateway writes — the database and its -wal/-shm files (created by
    // SQLite with the umask's mode), spool bodies, keys, certificates — is for the service
    // user alone: mail and key material are nobody else's business.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { config: path } => {
            let config = load(&path)?;
            crate::telemetry::init(config.log_format);
            runtime.block_on(crate::gateway::run(config, path))?;
            Ok(0)
        }
        Command::CheckConfig { config } => {
            let checked = crate::gateway::checked_config(&config)?;
            let user = nix::unistd::User::from_name(&checked.service.user)
                .ok()
                .flatten();
            let warnings = crate::service::permission_warnings(&checked.data_dir, user.as_ref());
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", config.display());
            Ok(0)
        }
        Command::Queue { config, action } => {
            let config = load(&config)?;
            runtime.block_on(queue::run(&config, action))
        }
        Command::Quarantine { config, action } => {
            let config = load(&config)?;
            runtime.block_on(quarantine::run(&config, action))
        }
        Command::Bayes { config, action } => {
            let config = load(&config)?;
            runtime.block_on(bayes::run(&config, action))
        }
        Command::Trust { config, action } => {
            let config = load(&config)?;
            runtime.block_on(trust::run(&config, action))
        }
        Command::Certs { config, action } => {
            let config = load(&config)?;
            runtime.block_on(certs::run(&config, action))
        }
        Command::Reload { config, json } => runtime.block_on(reload(config.as_deref(), json)),
        Command::Lists { config, action } => {
            let config = load(&config)?;
            runtime.block_on(lists::run(&config, action))
        }
        Command::Eval { config, args } => {
            let config = load(&config)?;
            runtime.block_on(eval::run(&config, args))
        }
        Command::Digest { config, action } => {
            let config = load(&config)?;
            runtime.block_on(digest::run(&config, action))
        }
        Command::Explain { config, args } => {
            let config = load(&config)?;
            runtime.block_on(explain::run(&config, args))
        }
        Command::Doctor { config } => {
            let config = load(&config)?;
            let findings = runtime.block_on(doctor::examine(&config));
            Ok(doctor::report(&findings))
        }
        Command::ClamavStatus { config, json } => {
            let config = load(&config)?;
            let resources = crate::pipeline::Resources::from_config(&config);
            let Some(clamd) = resources.clamd else {
                anyhow::bail!("ClamAV is not enabled in this config ([clamav] enabled = true)");
            };
            let health = runtime
                .block_on(clamd.health())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "endpoint": clamd.endpoint().to_string(),
                        "version": health.version,
                        "signatures": health.signatures,
                        "signature_date": health.signature_date,
                        "latency_ms": health.latency.as_secs_f64() * 1000.0,
                    })
                );
            } else {
                println!("endpoint:       {}", clamd.endpoint());
                println!("version:        {}", health.version);
                println!(
                    "signatures:     {}",
                    health.signatures.as_deref().unwrap_or("(not reported)")
                );
                println!(
                    "signature date: {}",
                    health.signature_date.as_deref().unwrap_or("(not reported)")
                );
                println!(
                    "latency:        {:.1} ms",
                    health.latency.as_secs_f64() * 1000.0
                );
            }
            Ok(0)
        }
        Command::Tui { config } => {
            let config = load(&config)?;
            let socket = crate::admin::socket_path(&config.data_dir);
            runtime.block_on(tui::run(socket))?;
            Ok(0)
        }
        Command::Symbols => {
            for (name, points, desc) in filters::symbols::REGISTRY {
                println!("{name:<28} {points:>6.2}  {desc}");
            }
            Ok(0)
        }
    }
}

/// The data directory a config file names, read without checking the rest: a reload is
/// asked for a file that may be wrong, and the gateway says what is wrong with it.
fn data_dir_of(path: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    let Some(path) = path else {
        return Ok(Config::default().data_dir);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    Ok(match table.get("data_dir").and_then(|v| v.as_str()) {
        Some(d) => PathBuf::from(d),
        None => Config::default().data_dir,
    })
}

/// `portcullis reload`: through the admin API only (a gateway that is not running reads
/// its config when it starts).
async fn reload(config: Option<&std::path::Path>, json: bool) -> anyhow::Result<i32> {
    let socket = crate::admin::socket_path(&data_dir_of(config)?);
    let client = crate::admin::client::Client::connect(&socket)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; nothing to reload"))?;
    let r = client.config_reload().await.map_err(target::explain)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    println!("reloaded {}", r.path);
    println!(
        "applied:       {}",
        if r.applied.is_empty() {
            "(nothing changed)".to_string()
        } else {
            r.applied.join(", ")
        }
    );
    if !r.needs_restart.is_empty() {
        println!(
            "needs restart: {} (the running values stay)",
            r.needs_restart.join(", ")
        );
    }
    Ok(0)
}
