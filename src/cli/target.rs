//! Where a CLI verb acts: the running gateway through its admin socket, or — when it does
//! not run — the files of its data directory, through the same operations the API calls.

use std::path::Path;

use crate::admin::client::{Client, Unreachable};
use crate::admin::{ApiError, Ops, socket_path};
use crate::config::Config;

pub enum Target {
    Remote(Client),
    Local(Ops),
}

/// Call the same operation on either target: `call!(target, queue_show(&id))`.
macro_rules! call {
    ($target:expr, $method:ident ( $($arg:expr),* )) => {
        match &$target {
            $crate::cli::target::Target::Remote(c) => c.$method($($arg),*).await,
            $crate::cli::target::Target::Local(o) => o.$method($($arg),*).await,
        }
    };
}
pub(crate) use call;

/// The value, or — for "no such thing" — the message on stderr and exit code 1; other
/// errors go up (exit code 2).
macro_rules! or_exit {
    ($result:expr) => {
        match $result {
            Ok(v) => v,
            Err(e) if e.is_not_found() => {
                eprintln!("{}", e.detail.message);
                return Ok(1);
            }
            Err(e) => return Err($crate::cli::target::explain(e)),
        }
    };
}
pub(crate) use or_exit;

/// An API error as the CLI reports it.
pub fn explain(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The name of the group that may reach the socket, for the permission message.
fn socket_group_name(config: &Config) -> String {
    if !config.admin.socket_group.is_empty() {
        return config.admin.socket_group.clone();
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(&config.data_dir)
        .ok()
        .and_then(|m| nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid())).ok())
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| "of the gateway".into())
}

impl Target {
    /// The running gateway when its socket answers; otherwise the files (a note on stderr
    /// says so). `needs_database`: offline, the database must exist already (reading a
    /// queue that was never created is a wrong `--config`, not an empty queue).
    pub async fn open(config: &Config, needs_database: bool) -> anyhow::Result<Target> {
        let socket = socket_path(&config.data_dir);
        match Client::connect(&socket).await {
            Ok(c) => Ok(Target::Remote(c)),
            Err(Unreachable::PermissionDenied(p)) => anyhow::bail!(
                "permission denied on the admin socket {}: add yourself to group {} \
                 ([admin] socket_group) and log in again",
                p.display(),
                socket_group_name(config)
            ),
            Err(e @ Unreachable::Other(..)) => Err(e.into()),
            Err(e) => {
                let db = config.data_dir.join("queue.db");
                if needs_database && !db.exists() {
                    anyhow::bail!(
                        "{e}; offline: no database in {} (wrong --config, or the gateway never ran there)",
                        config.data_dir.display()
                    );
                }
                eprintln!(
                    "{e}; offline: working on the files in {}",
                    config.data_dir.display()
                );
                Ok(Target::Local(Ops::offline(config).await?))
            }
        }
    }
}

/// A file's bytes, or an error naming it.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}
