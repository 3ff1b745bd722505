//! `[fleet]` and `[fleet.lock]`: who this host is in a fleet, where it reports, and
//! which restart-slot service coordinates its disruptive updates.
//!
//! The host name ends up in overlay paths (`hosts/{host}/apps`), FleetLock ids, etcd
//! keys and report bodies, so it is checked here once as a path segment rather than in
//! each of those places.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{ConfigError, duration};

/// `[fleet]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFragment {
    /// The host's name in the fleet; default: the hostname.
    pub host: Option<String>,
    /// The host's groups, in overlay order.
    pub groups: Option<Vec<String>>,
    /// Where deployment reports are POSTed; `""` for none.
    pub report_url: Option<String>,
    /// A file holding the bearer token for `report_url`.
    pub report_token_file: Option<PathBuf>,
    /// Heartbeat interval, e.g. `"5m"`.
    pub report_interval: Option<String>,
    /// `[fleet.lock]`.
    #[serde(default)]
    pub lock: FleetLockFragment,
}

/// `[fleet.lock]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetLockFragment {
    /// A FleetLock server's base URL; `""` for none.
    pub url: Option<String>,
    /// etcd v3 endpoints, used instead of a FleetLock server.
    pub etcd: Option<Vec<String>>,
    /// The lock group of this host.
    pub group: Option<String>,
    /// Slots per group for the etcd backend (a FleetLock server decides its own).
    pub slots: Option<u32>,
}

/// Validated `[fleet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// The host's name in overlays, reports and the lock; a valid path segment.
    pub host: String,
    /// The host's groups in overlay order, each a valid path segment.
    pub groups: Vec<String>,
    /// Where reports go; `None` sends none.
    pub report_url: Option<String>,
    /// The bearer token's file; the token never sits in config or URLs.
    pub report_token_file: Option<PathBuf>,
    /// A report is sent at least this often even when nothing changed, so a silent host
    /// is distinguishable from a dead one.
    pub report_interval: Duration,
    /// The restart-slot lock; `None` means disruptive passes need no slot.
    pub lock: Option<FleetLockSettings>,
}

/// Which service hands out restart slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockBackend {
    /// A FleetLock server (airlock, fleetlock) at this base URL.
    FleetLock {
        /// `http(s)://host[:port][/prefix]`, without a trailing slash.
        url: String,
    },
    /// An etcd v3 cluster spoken to directly, with airlock's semaphore layout.
    Etcd {
        /// `http(s)://host:port` endpoints, tried in order.
        endpoints: Vec<String>,
        /// Slots per group, written when the semaphore key is first created.
        slots: u32,
    },
}

/// Validated `[fleet.lock]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetLockSettings {
    /// The slot service.
    pub backend: LockBackend,
    /// The FleetLock group, default `"default"` (airlock's default).
    pub group: String,
}

/// Lays `over` onto `base`, key by key.
pub fn merge(base: FleetFragment, over: FleetFragment) -> FleetFragment {
    FleetFragment {
        host: over.host.or(base.host),
        groups: over.groups.or(base.groups),
        report_url: over.report_url.or(base.report_url),
        report_token_file: over.report_token_file.or(base.report_token_file),
        report_interval: over.report_interval.or(base.report_interval),
        lock: FleetLockFragment {
            url: over.lock.url.or(base.lock.url),
            etcd: over.lock.etcd.or(base.lock.etcd),
            group: over.lock.group.or(base.lock.group),
            slots: over.lock.slots.or(base.lock.slots),
        },
    }
}

/// Checks that `name` can be one path segment and one URL/etcd key segment: it goes into
/// overlay paths, where `..` or `/` would read another host's folder.
pub fn check_segment(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a name"));
    }
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use letters, digits, '-', '_' and '.' only, since it becomes a folder name in overlays"
        ));
    }
    Ok(())
}

fn http_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains('@')
        });
    if !ok {
        return Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!(
                "{url:?} is not an http:// or https:// URL with a host (and no credentials); write e.g. \"https://fleetlock.example.org\""
            ),
        });
    }
    // A query would carry tokens into logs and reports, and the lock protocols append
    // their own paths (`/v1/pre-reboot`), which a query or fragment would swallow.
    if url.contains(['?', '#']) {
        return Err(ConfigError::Value {
            key: key.to_owned(),
            message: format!(
                "{:?} has a query or fragment; give the bare URL (a bearer token goes in fleet.report_token_file, never in the URL)",
                redact_query(url)
            ),
        });
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `url` without its query and fragment, for messages: a query may hold a token.
fn redact_query(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(i) => format!("{}?…", &url[..i]),
        None => url.to_owned(),
    }
}

/// Validates `[fleet]`; `hostname` is the default host name.
pub fn settings(f: FleetFragment, hostname: Option<&str>) -> Result<FleetSettings, ConfigError> {
    // A machine without a hostname (a bare container) still runs legerd; it only needs a
    // name once it joins a fleet, and then `fleet.host` says which.
    let host = f
        .host
        .as_deref()
        .or(hostname)
        .unwrap_or("localhost")
        .to_owned();
    check_segment(&host).map_err(|m| ConfigError::Value {
        key: "fleet.host".to_owned(),
        // Unset, the host is the hostname: say so, or the key looks like a mystery.
        message: if f.host.is_some() {
            m
        } else {
            format!("the hostname {m}; set fleet.host to this host's fleet name")
        },
    })?;
    let groups = f.groups.unwrap_or_default();
    for (i, g) in groups.iter().enumerate() {
        check_segment(g).map_err(|m| ConfigError::Value {
            key: format!("fleet.groups[{i}]"),
            message: m,
        })?;
        if groups[..i].contains(g) {
            return Err(ConfigError::Value {
                key: format!("fleet.groups[{i}]"),
                message: format!("{g:?} is listed twice"),
            });
        }
    }
    let report_url = match f.report_url.filter(|u| !u.is_empty()) {
        Some(u) => Some(http_url("fleet.report_url", &u)?),
        None => None,
    };
    if let Some(p) = &f.report_token_file
        && !p.is_absolute()
    {
        return Err(ConfigError::Value {
            key: "fleet.report_token_file".to_owned(),
            message: format!("{} must be an absolute path", p.display()),
        });
    }
    let report_interval = duration(
        "fleet.report_interval",
        f.report_interval,
        Duration::from_secs(300),
    )?;
    if report_interval.is_zero() {
        return Err(ConfigError::Value {
            key: "fleet.report_interval".to_owned(),
            message: "must be greater than zero".to_owned(),
        });
    }
    let lock = lock_settings(f.lock)?;
    Ok(FleetSettings {
        host,
        groups,
        report_url,
        report_token_file: f.report_token_file,
        report_interval,
        lock,
    })
}

fn lock_settings(f: FleetLockFragment) -> Result<Option<FleetLockSettings>, ConfigError> {
    let url = f.url.filter(|u| !u.is_empty());
    let etcd = f.etcd.filter(|e| !e.is_empty());
    let backend = match (url, etcd) {
        (None, None) => {
            if let Some((key, _)) = [
                ("fleet.lock.group", f.group.is_some()),
                ("fleet.lock.slots", f.slots.is_some()),
            ]
            .into_iter()
            .find(|(_, set)| *set)
            {
                return Err(ConfigError::Value {
                    key: key.to_owned(),
                    message: "has no effect without fleet.lock.url or fleet.lock.etcd".to_owned(),
                });
            }
            return Ok(None);
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::Value {
                key: "fleet.lock".to_owned(),
                message: "set either url (a FleetLock server) or etcd (endpoints), not both"
                    .to_owned(),
            });
        }
        (Some(u), None) => {
            if f.slots.is_some() {
                return Err(ConfigError::Value {
                    key: "fleet.lock.slots".to_owned(),
                    message: "a FleetLock server decides its own slots; slots is for etcd"
                        .to_owned(),
                });
            }
            LockBackend::FleetLock {
                url: http_url("fleet.lock.url", &u)?,
            }
        }
        (None, Some(endpoints)) => {
            let endpoints = endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| http_url(&format!("fleet.lock.etcd[{i}]"), e))
                .collect::<Result<Vec<_>, _>>()?;
            let slots = f.slots.unwrap_or(1);
            if slots == 0 {
                return Err(ConfigError::Value {
                    key: "fleet.lock.slots".to_owned(),
                    message: "must be 1 or more".to_owned(),
                });
            }
            LockBackend::Etcd { endpoints, slots }
        }
    };
    let group = f.group.unwrap_or_else(|| "default".to_owned());
    check_segment(&group).map_err(|m| ConfigError::Value {
        key: "fleet.lock.group".to_owned(),
        message: m,
    })?;
    Ok(Some(FleetLockSettings { backend, group }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FleetSettings, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            fleet: FleetFragment,
        }
        let d: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        settings(d.fleet, Some("node-1")).map_err(|e| e.to_string())
    }

    #[test]
    fn fleet_hostname_that_is_no_path_segment_asks_for_fleet_host() {
        let e = settings(FleetFragment::default(), Some("a/b"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fleet.host"), "{e}");
        assert!(e.contains("the hostname \"a/b\" contains '/'"), "{e}");
        assert!(e.contains("set fleet.host"), "{e}");
        // An explicit good name wins over a bad hostname.
        let f = FleetFragment {
            host: Some("web-03".into()),
            ..FleetFragment::default()
        };
        assert_eq!(settings(f, Some("a/b")).unwrap().host, "web-03");
    }

    #[test]
    fn fleet_defaults_to_hostname_no_groups_no_lock() {
        let s = parse("").unwrap();
        assert_eq!(s.host, "node-1");
        assert!(s.groups.is_empty());
        assert_eq!(s.lock, None);
        assert_eq!(s.report_url, None);
        assert_eq!(s.report_interval, Duration::from_secs(300));
    }

    #[test]
    fn fleet_reads_the_issue_example() {
        let s = parse(
            "[fleet]\nhost = \"web-03\"\ngroups = [\"eu\", \"canary\"]\nreport_url = \"https://fleet.example.org/report\"\nreport_interval = \"5m\"\n[fleet.lock]\nurl = \"https://fleetlock.example.org/\"\ngroup = \"default\"\n",
        )
        .unwrap();
        assert_eq!(s.host, "web-03");
        assert_eq!(s.groups, ["eu", "canary"]);
        let lock = s.lock.unwrap();
        assert_eq!(
            lock.backend,
            LockBackend::FleetLock {
                url: "https://fleetlock.example.org".into()
            }
        );
        assert_eq!(lock.group, "default");
    }

    #[test]
    fn fleet_etcd_backend_with_slots() {
        let s =
            parse("[fleet.lock]\netcd = [\"http://192.0.2.1:2379\"]\nslots = 2\ngroup = \"web\"\n")
                .unwrap();
        assert_eq!(
            s.lock.unwrap().backend,
            LockBackend::Etcd {
                endpoints: vec!["http://192.0.2.1:2379".into()],
                slots: 2
            }
        );
    }

    #[test]
    fn fleet_bad_input_is_refused_with_the_key() {
        for (text, want) in [
            ("[fleet]\nhots = \"x\"\n", "unknown field `hots`"),
            ("[fleet.lock]\nulr = \"x\"\n", "unknown field `ulr`"),
            ("[fleet]\nhost = \"../etc\"\n", "fleet.host"),
            ("[fleet]\nhost = \"a/b\"\n", "fleet.host"),
            ("[fleet]\nhost = \"..\"\n", "fleet.host"),
            ("[fleet]\ngroups = [\"eu\", \"e u\"]\n", "fleet.groups[1]"),
            ("[fleet]\ngroups = [\"eu\", \"eu\"]\n", "listed twice"),
            ("[fleet.lock]\nurl = \"ftp://x\"\n", "fleet.lock.url"),
            ("[fleet.lock]\nurl = \"https://u:p@x\"\n", "fleet.lock.url"),
            ("[fleet.lock]\netcd = [\"x:2379\"]\n", "fleet.lock.etcd[0]"),
            (
                "[fleet.lock]\nurl = \"http://a\"\netcd = [\"http://b\"]\n",
                "not both",
            ),
            ("[fleet.lock]\ngroup = \"g\"\n", "without fleet.lock.url"),
            (
                "[fleet.lock]\nurl = \"http://a\"\nslots = 2\n",
                "slots is for etcd",
            ),
            ("[fleet]\nreport_url = \"file:///x\"\n", "fleet.report_url"),
            (
                "[fleet]\nreport_url = \"https://f.example.org/r?token=abc\"\n",
                "report_token_file",
            ),
            ("[fleet.lock]\nurl = \"http://a/#x\"\n", "fleet.lock.url"),
            (
                "[fleet]\nreport_interval = \"often\"\n",
                "fleet.report_interval",
            ),
            ("[fleet]\nreport_token_file = \"tok\"\n", "absolute"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("token=abc"), "a query is not repeated: {e}");
        }
    }

    #[test]
    fn fleet_merge_is_key_by_key() {
        let a = FleetFragment {
            host: Some("a".into()),
            lock: FleetLockFragment {
                url: Some("http://x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let b = FleetFragment {
            groups: Some(vec!["g".into()]),
            lock: FleetLockFragment {
                group: Some("web".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = merge(a, b);
        assert_eq!(m.host.as_deref(), Some("a"));
        assert_eq!(m.groups, Some(vec!["g".into()]));
        assert_eq!(m.lock.url.as_deref(), Some("http://x"));
        assert_eq!(m.lock.group.as_deref(), Some("web"));
    }
}
