//! Who may do what on the API socket.
//!
//! The socket's file mode (0660, group `leger`) only says who may connect. Every request
//! is also checked against the caller's own credentials, read from the connection with
//! `SO_PEERCRED` when it is accepted, so reading status and changing the host are two
//! different rights:
//!
//! - **read** (`GET`: status, history, revisions, backups, the staged diff, identity,
//!   the secret list): root, legerd's own user, and members of the reader group
//!   (`[api] socket_group`, default `leger`) or the admin group;
//! - **write** (every other method: `secrets set/rm`, `restore`, `reconcile`, and any
//!   endpoint added later): root, legerd's own user, and members of the admin group
//!   (`[api] admin_group`, default `leger-admin`).
//!
//! The role follows from the HTTP method alone, so a new write endpoint is protected
//! without anyone remembering to list it.
//!
//! **Why `/proc/<pid>/status` for supplementary groups, not `getgrouplist(uid)`:** the
//! groups that count are the ones the calling *process* holds. A service started with
//! systemd's `SupplementaryGroups=`, or a shell after `newgrp`/`sg`, has groups that
//! `/etc/group` does not list for its user, and a process that dropped its groups
//! (`setpriv --clear-groups`) must not get them back from `/etc/group`. `getgrouplist`
//! would also need libc (this crate forbids `unsafe`) or a partial `/etc/group` reader
//! that misses NSS sources. The pid comes from `SO_PEERCRED` at connect time; to guard
//! against the pid being reused by then, the `Uid:` line must still name the peer's uid,
//! otherwise only the peer's primary gid counts.

use std::collections::BTreeSet;
use std::path::Path;

use axum::http::Method;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads state; changes nothing.
    Read,
    /// Changes desired state, secrets, volumes, or asks for a pass.
    Write,
}

impl Role {
    /// The role a request needs: `GET` and `HEAD` read, everything else writes.
    pub fn of(method: &Method) -> Role {
        if method == Method::GET || method == Method::HEAD {
            Role::Read
        } else {
            Role::Write
        }
    }

    /// `read` or `write`, for the journal and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }
}

/// The credentials of the process on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Effective uid at connect time (`SO_PEERCRED`).
    pub uid: u32,
    /// Effective gid at connect time (`SO_PEERCRED`).
    pub gid: u32,
    /// The peer's pid, when the kernel reported one.
    pub pid: Option<i32>,
    /// Supplementary groups, from `/proc/<pid>/status`.
    pub groups: Vec<u32>,
}

impl Caller {
    /// The caller of a freshly accepted connection: `SO_PEERCRED` plus the supplementary
    /// groups of its pid. `None` when the kernel gave no credentials (never on Linux for a
    /// connected Unix stream socket); such a request is refused.
    pub fn of_stream(stream: &tokio::net::UnixStream) -> Option<Caller> {
        let cred = stream.peer_cred().ok()?;
        let pid = cred.pid();
        let groups = pid
            .and_then(|p| {
                std::fs::read_to_string(Path::new("/proc").join(p.to_string()).join("status")).ok()
            })
            .map(|text| groups_from_proc_status(&text, cred.uid()))
            .unwrap_or_default();
        Some(Caller {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            groups,
        })
    }
}

/// The supplementary groups in the text of `/proc/<pid>/status`, if its `Uid:` line
/// still names `uid` (real or effective); otherwise none (the pid was reused).
pub fn groups_from_proc_status(text: &str, uid: u32) -> Vec<u32> {
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).map(|rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
    };
    let same_process = field("Uid:").is_some_and(|ids| ids.iter().take(2).any(|u| *u == uid));
    if !same_process {
        return Vec::new();
    }
    field("Groups:").unwrap_or_default()
}

/// One group that grants a role: its name (for messages) and id (for the check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// As configured, e.g. `leger-admin`.
    pub name: String,
    /// Looked up at start; `None` when the group does not exist on this host.
    pub gid: Option<u32>,
}

impl Group {
    /// Looks `name` up in a `group(5)` file; a missing group is logged once and grants
    /// nothing.
    pub fn lookup(name: &str, group_file: &Path, key: &str) -> Group {
        let gid = match crate::api::lookup_group(name, group_file) {
            Ok(gid) => gid,
            Err(e) => {
                tracing::warn!(group = name, error = %e, "cannot look the group up; it grants nothing");
                None
            }
        };
        if gid.is_none() {
            tracing::warn!(
                group = name,
                "group not found in /etc/group; its members cannot use the API (create it or change {key})"
            );
        }
        Group {
            name: name.to_owned(),
            gid,
        }
    }
}

/// Who may read and who may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// legerd's own effective uid: in user mode the user who owns the socket.
    pub owner_uid: u32,
    /// Members may read (`[api] socket_group`).
    pub readers: Option<Group>,
    /// Members may read and write (`[api] admin_group`).
    pub admins: Option<Group>,
}

/// A request the caller's credentials do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl AccessPolicy {
    /// Only root and legerd's own user: what tests and user mode start from.
    pub fn owner_only() -> AccessPolicy {
        AccessPolicy {
            owner_uid: rustix::process::geteuid().as_raw(),
            readers: None,
            admins: None,
        }
    }

    /// The policy from the configured group names, looked up in `/etc/group`.
    pub fn from_settings(readers: Option<&str>, admins: Option<&str>) -> AccessPolicy {
        let file = Path::new("/etc/group");
        AccessPolicy {
            readers: readers.map(|g| Group::lookup(g, file, "api.socket_group")),
            admins: admins.map(|g| Group::lookup(g, file, "api.admin_group")),
            ..AccessPolicy::owner_only()
        }
    }

    /// Allows or refuses `role` for `caller`. The refusal says which group to join.
    pub fn check(&self, caller: &Caller, role: Role) -> Result<(), Denied> {
        if caller.uid == 0 || caller.uid == self.owner_uid {
            return Ok(());
        }
        let held: BTreeSet<u32> = caller.groups.iter().copied().chain([caller.gid]).collect();
        let member = |g: &Option<Group>| {
            g.as_ref()
                .and_then(|g| g.gid)
                .is_some_and(|gid| held.contains(&gid))
        };
        let allowed = match role {
            Role::Read => member(&self.readers) || member(&self.admins),
            Role::Write => member(&self.admins),
        };
        if allowed {
            return Ok(());
        }
        let group = match role {
            Role::Read => self.readers.as_ref().or(self.admins.as_ref()),
            Role::Write => self.admins.as_ref(),
        };
        Err(Denied(match group {
            Some(g) => format!(
                "permission denied: uid {} may not {} here; this needs root or membership in group {} (ask an admin to run `usermod -aG {} USER`, then log in again)",
                caller.uid,
                role.as_str(),
                g.name,
                g.name
            ),
            None => format!(
                "permission denied: uid {} may not {} here; only root and legerd's own user may (no group is configured for it in [api])",
                caller.uid,
                role.as_str()
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, gid: u32) -> Option<Group> {
        Some(Group {
            name: name.into(),
            gid: Some(gid),
        })
    }

    fn policy() -> AccessPolicy {
        AccessPolicy {
            owner_uid: 0,
            readers: group("leger", 900),
            admins: group("leger-admin", 901),
        }
    }

    fn caller(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller {
            uid,
            gid,
            pid: Some(1234),
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn role_follows_the_method() {
        assert_eq!(Role::of(&Method::GET), Role::Read);
        assert_eq!(Role::of(&Method::HEAD), Role::Read);
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(Role::of(&m), Role::Write, "{m}");
        }
    }

    #[test]
    fn access_reader_reads_but_does_not_write() {
        let p = policy();
        let reader = caller(1000, 1000, &[900]);
        assert!(p.check(&reader, Role::Read).is_ok());
        let e = p.check(&reader, Role::Write).unwrap_err().to_string();
        assert!(
            e.contains("group leger-admin") && e.contains("uid 1000"),
            "{e}"
        );
    }

    #[test]
    fn access_admin_reads_and_writes_by_supplementary_or_primary_group() {
        let p = policy();
        for admin in [caller(1001, 1001, &[901]), caller(1001, 901, &[])] {
            assert!(p.check(&admin, Role::Read).is_ok());
            assert!(p.check(&admin, Role::Write).is_ok());
        }
    }

    #[test]
    fn access_stranger_is_refused_and_told_the_group() {
        let p = policy();
        let e = p
            .check(&caller(1002, 1002, &[100]), Role::Read)
            .unwrap_err()
            .to_string();
        assert!(e.contains("group leger "), "{e}");
    }

    #[test]
    fn access_root_and_owner_are_always_allowed() {
        let mut p = policy();
        p.owner_uid = 1500;
        p.readers = None;
        p.admins = None;
        for c in [caller(0, 0, &[]), caller(1500, 1500, &[])] {
            assert!(p.check(&c, Role::Write).is_ok());
        }
        let e = p
            .check(&caller(1501, 1501, &[]), Role::Read)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no group is configured"), "{e}");
    }

    #[test]
    fn access_missing_group_grants_nothing() {
        let p = AccessPolicy {
            owner_uid: 0,
            readers: Some(Group {
                name: "leger".into(),
                gid: None,
            }),
            admins: None,
        };
        assert!(p.check(&caller(7, 7, &[7]), Role::Read).is_err());
    }

    #[test]
    fn proc_status_groups_are_read_when_the_uid_still_matches() {
        let text = "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t24 900 901 \n";
        assert_eq!(groups_from_proc_status(text, 1000), [24, 900, 901]);
        assert!(
            groups_from_proc_status(text, 1001).is_empty(),
            "a reused pid of another user gives nothing"
        );
        assert!(groups_from_proc_status("Uid:\t5\t5\t5\t5\nGroups:\n", 5).is_empty());
    }

    #[test]
    fn caller_of_a_real_connection_is_this_process() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = tokio::net::UnixStream::pair().unwrap();
            let c = Caller::of_stream(&a).unwrap();
            assert_eq!(c.uid, rustix::process::geteuid().as_raw());
            assert_eq!(c.pid, Some(std::process::id() as i32));
        });
    }
}
