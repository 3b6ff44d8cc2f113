//! Whom the gateway runs as. Started as root (as systemd starts it), the gateway binds its
//! SMTP ports — the one thing that needs root — gives the data directory to the service user
//! (`[service] user`), and becomes that user and its groups for good, before it opens the
//! database, reads a key or takes a byte of mail. Root is kept only when the operator says
//! so (`[service] allow_root`); without the user, a root start stops and says what to do.

use std::ffi::CString;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use nix::unistd::{Uid, User};

use crate::config::{Config, ServiceConfig};

/// What a start leads to.
#[derive(Debug)]
pub enum Plan {
    /// Run as started: not root, or root by the operator's choice.
    Stay,
    /// Started as root: become this user once the ports are bound.
    Become(User),
}

impl Plan {
    /// Decide from the process's user and `[service]`.
    pub fn decide(config: &ServiceConfig) -> anyhow::Result<Plan> {
        Plan::decide_as(nix::unistd::geteuid(), config)
    }

    fn decide_as(euid: Uid, config: &ServiceConfig) -> anyhow::Result<Plan> {
        if !euid.is_root() {
            return Ok(Plan::Stay);
        }
        if config.allow_root {
            tracing::warn!(
                "running as root ([service] allow_root = true): a hole in any parser would be root's"
            );
            return Ok(Plan::Stay);
        }
        if config.user.is_empty() {
            bail!(
                "started as root, and [service] user is empty: name the user to run as \
                 (e.g. user = \"portcullis\"), or set [service] allow_root = true to stay root \
                 (not recommended)"
            );
        }
        match User::from_name(&config.user) {
            Ok(Some(u)) if u.uid.is_root() => bail!(
                "key `service.user`: {:?} is root (uid 0); name an unprivileged user, or set \
                 [service] allow_root = true",
                config.user
            ),
            Ok(Some(u)) => Ok(Plan::Become(u)),
            Ok(None) => bail!(
                "started as root, and the service user {:?} does not exist: create it \
                 (adduser --system --group --home /var/lib/portcullis {0}), name another with \
                 [service] user, or set [service] allow_root = true to stay root (not \
                 recommended)",
                config.user
            ),
            Err(e) => bail!("cannot look up the service user {:?}: {e}", config.user),
        }
    }

    /// The uid the gateway runs as once started: its own user on the admin socket.
    pub fn service_uid(&self) -> u32 {
        match self {
            Plan::Stay => nix::unistd::geteuid().as_raw(),
            Plan::Become(u) => u.uid.as_raw(),
        }
    }
}

/// SMTP sockets bound before the change of user (ports below 1024 need root).
#[derive(Debug, Default)]
pub struct Prebound(Vec<(SocketAddr, std::net::TcpListener)>);

impl Prebound {
    /// Bind every listener of `config`.
    pub fn bind(config: &Config) -> anyhow::Result<Prebound> {
        let mut out = Vec::new();
        for l in &config.listeners {
            let socket = std::net::TcpListener::bind(l.bind).with_context(|| {
                format!(
                    "cannot listen on {} (is another server using the port?)",
                    l.bind
                )
            })?;
            socket.set_nonblocking(true)?;
            out.push((l.bind, socket));
        }
        // The report links' endpoint may use a privileged port (443) too.
        if let Ok(addr) = config.digest.http_bind.parse::<SocketAddr>() {
            let socket = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr} (key `digest.http_bind`)"))?;
            socket.set_nonblocking(true)?;
            out.push((addr, socket));
        }
        Ok(Prebound(out))
    }

    /// The socket bound for `addr`, if one was.
    pub fn take(&mut self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        let i = self.0.iter().position(|(a, _)| *a == addr)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// Raise the soft limit of open files to the hard one: every session is a socket, every
/// spooled body a file, and the usual soft limit (1024) is below `max_connections`' default.
/// Warns when even the hard limit is below `needed`.
pub fn raise_file_limit(needed: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (limit.current, limit.maximum)
        && cur < max
    {
        limit.current = Some(max);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if let Some(n) = now
        && n < needed
    {
        tracing::warn!(
            limit = n,
            needed,
            "the open-file limit is below what max_connections needs: raise it (LimitNOFILE= in the unit, ulimit -n) or lower [limits] max_connections"
        );
    }
}

/// Give `data_dir` and everything in it to `user` (each entry keeps its group and mode),
/// then become `user` with its groups: supplementary groups, group, user, in that order.
/// Checks that root cannot be regained.
pub fn become_user(user: &User, data_dir: &Path) -> anyhow::Result<()> {
    crate::store::create_private_dir(data_dir)?;
    give_tree(data_dir, user.uid).with_context(|| {
        format!(
            "cannot give the data directory {} to the service user {}",
            data_dir.display(),
            user.name
        )
    })?;
    let name = CString::new(user.name.as_str())?;
    let groups = nix::unistd::getgrouplist(&name, user.gid)
        .with_context(|| format!("cannot read the groups of {}", user.name))?;
    nix::unistd::setgroups(&groups).context("setgroups")?;
    nix::unistd::setgid(user.gid).context("setgid")?;
    nix::unistd::setuid(user.uid).context("setuid")?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || nix::unistd::geteuid().is_root()
        || nix::unistd::getegid() != user.gid
    {
        bail!("the change to user {} did not hold", user.name);
    }
    tracing::info!(
        user = %user.name,
        uid = user.uid.as_raw(),
        gid = user.gid.as_raw(),
        "running as the service user"
    );
    Ok(())
}

/// The owner of `path` and of everything below it becomes `uid`; symbolic links are
/// changed themselves, never followed.
fn give_tree(path: &Path, uid: Uid) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid.as_raw()), None)?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// What is too open or belongs to someone else in `data_dir` (its top level: the
/// database, the master key, the socket, the spool and quarantine directories): one line
/// per finding, saying what to do. `service_user`: the configured user, when it exists.
pub fn permission_warnings(data_dir: &Path, service_user: Option<&User>) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let Ok(meta) = std::fs::symlink_metadata(data_dir) else {
        return out;
    };
    let foreign = |uid: u32| uid != 0 && service_user.is_some_and(|u| u.uid.as_raw() != uid);
    let check = |path: &Path, meta: &std::fs::Metadata, out: &mut Vec<String>| {
        let mode = meta.mode() & 0o7777;
        let shown = path.display();
        // Directories: the admin socket's group may pass through (0710), nobody else.
        // The socket: its group may use it (0660). Everything else: the owner only.
        let (allowed, want) = if meta.is_dir() {
            (
                0o7710,
                "0700 (0710 for the data directory with an admin socket group)",
            )
        } else if meta.file_type().is_socket() {
            (0o7660, "0660")
        } else {
            (0o7600, "0600")
        };
        if mode & !allowed != 0 {
            out.push(format!(
                "{shown} has mode {mode:04o}: mail, keys and the database are the gateway's \
                 alone; chmod it to {want}"
            ));
        }
        if foreign(meta.uid()) {
            out.push(format!(
                "{shown} belongs to uid {}, neither root nor the service user: chown it to {}",
                meta.uid(),
                service_user.map_or("the service user", |u| u.name.as_str())
            ));
        }
    };
    check(data_dir, &meta, &mut out);
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                check(&path, &meta, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(user: &str, allow_root: bool) -> ServiceConfig {
        ServiceConfig {
            user: user.into(),
            allow_root,
        }
    }

    #[test]
    fn a_non_root_start_stays_as_it_is() {
        let plan = Plan::decide_as(Uid::from_raw(1000), &service("no-such-user-here", false));
        assert!(matches!(plan, Ok(Plan::Stay)));
    }

    #[test]
    fn a_root_start_needs_the_user_or_the_explicit_override() {
        let root = Uid::from_raw(0);
        let err = Plan::decide_as(root, &service("no-such-user-here", false)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("does not exist") && text.contains("adduser"),
            "{text}"
        );
        assert!(text.contains("allow_root"), "{text}");
        let err = Plan::decide_as(root, &service("", false)).unwrap_err();
        assert!(err.to_string().contains("[service] user is empty"));
        let err = Plan::decide_as(root, &service("root", false)).unwrap_err();
        assert!(err.to_string().contains("is root"));
        assert!(matches!(
            Plan::decide_as(root, &service("no-such-user-here", true)),
            Ok(Plan::Stay)
        ));
        match Plan::decide_as(root, &service("nobody", false)) {
            Ok(Plan::Become(u)) => assert_eq!(u.name, "nobody"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wide_modes_are_named_with_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o710)).unwrap();
        let key = data.join("smime-master.key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(permission_warnings(&data, None).is_empty());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = permission_warnings(&data, None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("mode 0755") && w[0].contains("chmod it to 0700"),
            "{w:?}"
        );
        assert!(w[1].contains("smime-master.key has mode 0644") && w[1].contains("0600"));
    }

    #[test]
    fn the_tree_is_given_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("data");
        std::fs::create_dir_all(inside.join("spool")).unwrap();
        std::fs::write(inside.join("spool/a"), b"x").unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"y").unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("link")).unwrap();
        // Giving to our own uid works without privileges and must not touch `outside`
        // through the link (its owner stays; lchown changes the link itself).
        let me = nix::unistd::geteuid();
        give_tree(&inside, me).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(inside.join("spool/a")).unwrap().uid(),
            me.as_raw()
        );
    }
}
