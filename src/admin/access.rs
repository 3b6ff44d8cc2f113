//! Who may do what on the admin socket: root and the gateway's own user, and members of
//! `[admin] operator_group`, may use every endpoint; members of `[admin] audit_group` may
//! only read (GET). Groups are looked up in the system's group database on every request,
//! so adding someone to a group takes effect without a restart.

use nix::unistd::{Gid, Group, Uid, User};

use super::ops::Caller;
use crate::config::AdminConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every endpoint.
    Operator,
    /// GET only.
    Auditor,
}

#[derive(Debug, Clone)]
pub struct Access {
    /// The gateway's own user: it owns the data directory anyway.
    service_uid: u32,
    operator_group: Option<String>,
    audit_group: Option<String>,
}

/// The group named `name`, or an error naming the config key.
pub fn group(key: &str, name: &str) -> anyhow::Result<Group> {
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g),
        Ok(None) => anyhow::bail!("key `{key}`: no group named {name:?} on this system"),
        Err(e) => anyhow::bail!("key `{key}`: cannot look up group {name:?}: {e}"),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Access {
    /// Checks that the configured groups exist (an error names the key).
    /// `service_uid`: the user the gateway runs as (an operator, like root).
    pub fn from_config(config: &AdminConfig, service_uid: u32) -> anyhow::Result<Access> {
        let operator_group = non_empty(&config.operator_group);
        let audit_group = non_empty(&config.audit_group);
        if let Some(g) = &operator_group {
            group("admin.operator_group", g)?;
        }
        if let Some(g) = &audit_group {
            group("admin.audit_group", g)?;
        }
        Ok(Access {
            service_uid,
            operator_group,
            audit_group,
        })
    }

    pub fn role(&self, caller: &Caller) -> Option<Role> {
        if caller.uid == 0 || caller.uid == self.service_uid {
            return Some(Role::Operator);
        }
        let member = |name: &Option<String>| name.as_deref().is_some_and(|g| is_member(caller, g));
        if member(&self.operator_group) {
            Some(Role::Operator)
        } else if member(&self.audit_group) {
            Some(Role::Auditor)
        } else {
            None
        }
    }

    /// What to tell a caller who may not do what they asked.
    pub fn refusal(&self, caller: &Caller, role: Option<Role>) -> String {
        let who = caller.describe();
        match (role, &self.operator_group) {
            (Some(Role::Auditor), Some(g)) => format!(
                "{who} may only read (member of the audit group): to change anything, add the user to group {g:?} ([admin] operator_group)"
            ),
            (Some(Role::Auditor), None) => format!(
                "{who} may only read (member of the audit group); changes need root or the gateway's user, or set [admin] operator_group"
            ),
            (_, Some(g)) => format!(
                "{who} may not use the admin API: add the user to group {g:?} ([admin] operator_group){}",
                self.audit_group
                    .as_deref()
                    .map(|a| format!(", or to {a:?} to read only ([admin] audit_group)"))
                    .unwrap_or_default()
            ),
            (_, None) => format!(
                "{who} may not use the admin API: only root and the gateway's user may, unless [admin] operator_group names a group"
            ),
        }
    }
}

/// Whether the caller is in group `name`: as its primary group (from the socket or the
/// user database) or as a listed member.
fn is_member(caller: &Caller, name: &str) -> bool {
    let Ok(Some(g)) = Group::from_name(name) else {
        return false;
    };
    if caller.gid == g.gid.as_raw() {
        return true;
    }
    let user = User::from_uid(Uid::from_raw(caller.uid)).ok().flatten();
    match user {
        Some(u) => u.gid == g.gid || g.mem.contains(&u.name),
        None => false,
    }
}

/// The gid of the socket's group: `[admin] socket_group`, else the gateway's own group.
pub fn socket_gid(config: &AdminConfig) -> anyhow::Result<Gid> {
    if config.socket_group.is_empty() {
        Ok(nix::unistd::getegid())
    } else {
        Ok(group("admin.socket_group", &config.socket_group)?.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, gid: u32) -> Caller {
        Caller {
            uid,
            gid,
            user: None,
        }
    }

    #[test]
    fn root_and_the_service_user_operate_strangers_are_refused() {
        let access =
            Access::from_config(&AdminConfig::default(), nix::unistd::geteuid().as_raw()).unwrap();
        assert_eq!(access.role(&caller(0, 0)), Some(Role::Operator));
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(access.role(&caller(me, 12345)), Some(Role::Operator));
        let stranger = caller(4_000_000, 4_000_000);
        assert_eq!(access.role(&stranger), None);
        assert!(access.refusal(&stranger, None).contains("operator_group"));
    }

    #[test]
    fn group_members_by_primary_gid() {
        // Group "root" (gid 0) exists everywhere; a caller whose primary gid is 0 is in it.
        let access = Access::from_config(
            &AdminConfig {
                audit_group: "root".into(),
                ..AdminConfig::default()
            },
            nix::unistd::geteuid().as_raw(),
        )
        .unwrap();
        assert_eq!(access.role(&caller(4_000_000, 0)), Some(Role::Auditor));
        assert_eq!(access.role(&caller(4_000_000, 4_000_000)), None);
        let err = Access::from_config(
            &AdminConfig {
                operator_group: "no-such-group-here".into(),
                ..AdminConfig::default()
            },
            nix::unistd::geteuid().as_raw(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("admin.operator_group"), "{err}");
    }
}
