//! Secrets: values from the local store, `git-age` files, setec or leger.run, converged
//! into Podman secrets.
//!
//! A pass runs in three steps so the planner stays pure: [`SecretsConverger::prepare`]
//! resolves every secret the desired units reference and decides (with [`decide`], pure)
//! which values changed and which units are blocked; the planner gets those as plain
//! names; [`SecretsConverger::write`] puts changed values into podman before the plan is
//! applied and [`SecretsConverger::finish`] clears restart marks and removes secrets no
//! unit references any more.
//!
//! **Invariant:** plaintext lives only in [`SecretValue`], which zeroizes on drop and
//! prints as `<redacted>`. It goes to podman on stdin and to SQLite age-encrypted, never
//! anywhere else. Change detection compares keyed MACs, never values.

pub mod git_age;
pub mod identity;
pub mod leger_run;
pub mod podman;
pub mod setec;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use leger_api_types::SecretSourceSpec;
use zeroize::Zeroizing;

pub use identity::NodeIdentity;

use crate::model::{DesiredTree, Snapshot};
use crate::pass::blocking;
use crate::store::{OwnedSecret, Store};

/// A secret's plaintext. Zeroized on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// The bytes, for the few places that must see them (podman's stdin, age, the MAC).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(v: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(v))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A JSON string holding secret material: zeroized on drop, redacted in `Debug`.
pub(crate) struct SecretText(pub(crate) Zeroizing<String>);

impl<'de> serde::Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretText(Zeroizing::new(s)))
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret operation failed. No variant carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The identity file could not be read or written.
    #[error("cannot {what} the node identity {path}: {source}; check the state directory")]
    Identity {
        /// The identity file.
        path: std::path::PathBuf,
        /// What was attempted.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The identity file holds no usable key.
    #[error(
        "the node identity {path} holds no AGE-SECRET-KEY line; restore it from a backup, or move it away to make a new one (secrets encrypted to the old one become unreadable)"
    )]
    IdentityInvalid {
        /// The identity file.
        path: std::path::PathBuf,
    },
    /// age refused to encrypt.
    #[error("cannot encrypt a secret: {0}")]
    Encrypt(String),
    /// A local store value did not decrypt with the node identity.
    #[error(
        "local secret {name} does not decrypt with the node identity: {reason}; set it again with `legerctl secrets set {name}`"
    )]
    LocalDecrypt {
        /// The secret.
        name: String,
        /// age's reason.
        reason: String,
    },
    /// A `secrets/NAME.age` file did not decrypt.
    #[error(
        "{file} is not encrypted to this node ({reason}); re-encrypt it to the recipient `legerctl identity` prints"
    )]
    GitAgeDecrypt {
        /// The file in the source tree.
        file: String,
        /// age's reason.
        reason: String,
    },
    /// The SSH identity configured for git-age could not be read.
    #[error(
        "cannot use ssh_identity {path}: {reason}; give an unencrypted ssh-ed25519 private key"
    )]
    SshIdentity {
        /// The key file.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A remote source answered with an error or not at all.
    #[error("{source_kind} source {url}: {reason}")]
    Remote {
        /// `setec` or `leger-run`.
        source_kind: &'static str,
        /// The base URL.
        url: String,
        /// What went wrong (never the value).
        reason: String,
    },
    /// A token file could not be read.
    #[error("cannot read token_file {path}: {source}")]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// podman failed.
    #[error("podman secret {what}{}{name} failed: {reason}", if name.is_empty() { "" } else { " " })]
    Podman {
        /// The verb.
        what: &'static str,
        /// The secret name.
        name: String,
        /// podman's stderr or the spawn error.
        reason: String,
    },
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A secret name podman would refuse.
    #[error(
        "invalid secret name {0:?}: use 1 to 253 letters, digits, '_', '.' and '-', starting with a letter or digit"
    )]
    InvalidName(String),
}

/// Checks a podman secret name: what podman accepts, and safe as a file name.
pub fn validate_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SecretError::InvalidName(name.to_owned()))
    }
}

/// A value found at a source.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The plaintext.
    pub value: SecretValue,
    /// The source kind it came from (`local`, `git-age`, ...).
    pub source: &'static str,
    /// The source's version of it, for `legerctl secrets list`.
    pub version: String,
}

/// What the sources said about one secret.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// Found at a source.
    Found(Resolved),
    /// No source has it.
    Missing,
    /// A source could not be asked; the last good value (if any) stays.
    Unavailable(String),
}

/// The `secrets/NAME.age` files of a snapshot, by secret name.
pub fn age_files(snapshot: &Snapshot) -> BTreeMap<String, (String, Arc<[u8]>)> {
    snapshot
        .files
        .iter()
        .filter_map(|(path, bytes)| {
            let name = path.strip_prefix("secrets/")?.strip_suffix(".age")?;
            validate_name(name).ok()?;
            Some((name.to_owned(), (path.clone(), Arc::clone(bytes))))
        })
        .collect()
}

/// Secret name → the units that consume it.
pub fn consumers(tree: &DesiredTree) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for unit in tree.apps.values().flat_map(|a| a.units.iter()) {
        for s in &unit.secrets {
            out.entry(s.clone()).or_default().insert(unit.name.clone());
        }
    }
    out
}

/// Podman secret name → the name to look up at the sources, from the apps'
/// `leger.toml`. `assemble` has already refused conflicting mappings.
pub fn source_names(tree: &DesiredTree) -> BTreeMap<String, String> {
    tree.apps
        .values()
        .flat_map(|a| a.config.secrets.names.clone())
        .collect()
}

/// The decision for one pass, computed by [`decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretPlan {
    /// Secrets whose value must be written to podman (new, changed, or deleted by hand).
    pub upsert: BTreeSet<String>,
    /// Secrets whose value changed: their consumers restart.
    pub changed: BTreeSet<String>,
    /// Units that must not be started or updated, with the secrets they lack.
    pub blocked: BTreeMap<String, BTreeSet<String>>,
    /// legerd-created secrets no desired unit references any more.
    pub remove: BTreeSet<String>,
    /// Things an operator should know (a source down, a foreign secret in the way).
    pub notes: Vec<String>,
}

/// Decides what to do with secrets. Pure: `macs` holds the MAC of each found value.
pub fn decide(
    consumers: &BTreeMap<String, BTreeSet<String>>,
    resolutions: &BTreeMap<String, Resolution>,
    macs: &BTreeMap<String, String>,
    owned: &BTreeMap<String, OwnedSecret>,
    in_podman: &BTreeSet<String>,
) -> SecretPlan {
    let mut p = SecretPlan::default();
    for (name, units) in consumers {
        let own = owned.get(name);
        let present = in_podman.contains(name);
        let foreign = present && own.is_none();
        let block = |p: &mut SecretPlan| {
            for u in units {
                p.blocked.entry(u.clone()).or_default().insert(name.clone());
            }
        };
        match resolutions.get(name) {
            Some(Resolution::Found(_)) if foreign => p.notes.push(format!(
                "podman secret {name} exists but was not created by legerd; leaving it as it is (remove it with `podman secret rm {name}` to let legerd manage it)"
            )),
            Some(Resolution::Found(_)) => {
                let mac = macs.get(name);
                let same = own.is_some_and(|o| Some(&o.mac) == mac);
                if !same || !present {
                    p.upsert.insert(name.clone());
                }
                if own.is_some_and(|o| !same || o.restart_pending) {
                    p.changed.insert(name.clone());
                }
            }
            Some(Resolution::Unavailable(e)) => {
                if present {
                    p.notes.push(format!("secret {name}: {e}; keeping the last good value"));
                    if own.is_some_and(|o| o.restart_pending) {
                        p.changed.insert(name.clone());
                    }
                } else {
                    p.notes.push(format!("secret {name}: {e}"));
                    block(&mut p);
                }
            }
            Some(Resolution::Missing) | None => {
                if !foreign {
                    block(&mut p);
                }
            }
        }
    }
    for name in owned.keys() {
        if !consumers.contains_key(name) {
            p.remove.insert(name.clone());
        }
    }
    p
}

/// One pass's secrets work, between [`SecretsConverger::prepare`] and
/// [`SecretsConverger::finish`].
#[derive(Debug, Default)]
pub struct PreparedSecrets {
    /// The decision.
    pub plan: SecretPlan,
    resolved: BTreeMap<String, (Resolved, String)>,
    consumers: BTreeMap<String, BTreeSet<String>>,
    sources: Vec<&'static str>,
}

impl PreparedSecrets {
    /// A status message naming each missing secret and the units it blocks, if any.
    pub fn blocked_message(&self) -> Option<String> {
        if self.plan.blocked.is_empty() {
            return None;
        }
        let mut by_secret: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (unit, secrets) in &self.plan.blocked {
            for s in secrets {
                by_secret.entry(s).or_default().push(unit);
            }
        }
        let parts: Vec<String> = by_secret
            .iter()
            .map(|(s, units)| {
                format!(
                    "secret {s} is missing at every source ({}); not started or updated: {}",
                    self.sources.join(", "),
                    units.join(", ")
                )
            })
            .collect();
        Some(format!(
            "{}. Set it with `legerctl secrets set NAME` or add it to a source",
            parts.join("; ")
        ))
    }
}

/// Resolves and writes secrets, pass after pass. Holds the setec cache, so a conditional
/// poll can answer 304.
#[derive(Debug)]
pub struct SecretsConverger {
    identity: Arc<NodeIdentity>,
    podman: podman::PodmanSecrets,
    http: reqwest::Client,
    setec_cache: HashMap<(String, String), setec::Cached>,
}

impl SecretsConverger {
    /// A converger for this node.
    pub fn new(identity: Arc<NodeIdentity>, podman: Arc<dyn crate::podman::Podman>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("the HTTP client builds");
        SecretsConverger {
            identity,
            podman: podman::PodmanSecrets::new(podman),
            http,
            setec_cache: HashMap::new(),
        }
    }

    /// Looks a secret up in the sources, in order. An unreachable source stops the
    /// look-up: falling through to the next one could flip a value back and forth.
    pub async fn resolve(
        &mut self,
        sources: &[SecretSourceSpec],
        name: &str,
        store: &Arc<Mutex<Store>>,
        age: &BTreeMap<String, (String, Arc<[u8]>)>,
    ) -> Resolution {
        for spec in sources {
            let r: Result<Option<Resolved>, SecretError> = match spec {
                SecretSourceSpec::Local => {
                    let n = name.to_owned();
                    let row = blocking::store(store, move |s| s.local_secret(&n)).await;
                    match row {
                        Ok(Some((ct, version))) => {
                            let (identity, n) = (Arc::clone(&self.identity), name.to_owned());
                            blocking::run(move || identity.decrypt(&n, &ct))
                                .await
                                .map(|value| {
                                    Some(Resolved {
                                        value,
                                        source: "local",
                                        version: version.to_string(),
                                    })
                                })
                        }
                        Ok(None) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
                SecretSourceSpec::GitAge { ssh_identity } => match age.get(name) {
                    None => Ok(None),
                    Some((file, bytes)) => {
                        // Reads the SSH key file and decrypts: the blocking pool's work.
                        let (file, bytes) = (file.clone(), Arc::clone(bytes));
                        let (identity, ssh) = (Arc::clone(&self.identity), ssh_identity.clone());
                        blocking::run(move || {
                            let value = git_age::decrypt(&file, &bytes, &identity, ssh.as_deref())?;
                            Ok(Some(Resolved {
                                value,
                                source: "git-age",
                                version: crate::model::ContentHash::of(&bytes).to_hex()[..12]
                                    .to_owned(),
                            }))
                        })
                        .await
                    }
                },
                SecretSourceSpec::Setec {
                    url,
                    token_file,
                    prefix,
                } => {
                    let full = format!("{}{name}", prefix.as_deref().unwrap_or(""));
                    let key = (url.clone(), full.clone());
                    let cached = self.setec_cache.get(&key).cloned();
                    match setec::get(
                        &self.http,
                        url,
                        token_file.as_deref(),
                        &full,
                        cached.as_ref(),
                    )
                    .await
                    {
                        Ok(Some(c)) => {
                            let r = Resolved {
                                value: c.value.clone(),
                                source: "setec",
                                version: c.version.to_string(),
                            };
                            self.setec_cache.insert(key, c);
                            Ok(Some(r))
                        }
                        Ok(None) => {
                            self.setec_cache.remove(&key);
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                }
                SecretSourceSpec::LegerRun { url, token_file } => {
                    leger_run::get(&self.http, url, token_file, name)
                        .await
                        .map(|o| {
                            o.map(|(value, version)| Resolved {
                                value,
                                source: "leger-run",
                                version,
                            })
                        })
                }
            };
            match r {
                Ok(Some(found)) => return Resolution::Found(found),
                Ok(None) => {}
                Err(e) => return Resolution::Unavailable(e.to_string()),
            }
        }
        Resolution::Missing
    }

    /// Resolves every referenced secret and decides what changes. Touches nothing but
    /// a read of podman's secret list.
    pub async fn prepare(
        &mut self,
        tree: &DesiredTree,
        sources: &[SecretSourceSpec],
        store: &Arc<Mutex<Store>>,
        age: &BTreeMap<String, (String, Arc<[u8]>)>,
    ) -> Result<PreparedSecrets, SecretError> {
        let consumers = consumers(tree);
        let owned = blocking::store(store, |s| s.owned_secrets()).await?;
        if consumers.is_empty() && owned.is_empty() {
            return Ok(PreparedSecrets::default());
        }
        let in_podman = self.podman.list().await?;
        let mut resolutions = BTreeMap::new();
        let mut macs = BTreeMap::new();
        let source_names = source_names(tree);
        for name in consumers.keys() {
            // An app's leger.toml may name the secret differently at the sources.
            let source_name = source_names.get(name).map_or(name.as_str(), String::as_str);
            let r = self.resolve(sources, source_name, store, age).await;
            if let Resolution::Found(f) = &r {
                macs.insert(name.clone(), self.identity.mac(name, &f.value));
            }
            resolutions.insert(name.clone(), r);
        }
        let plan = decide(&consumers, &resolutions, &macs, &owned, &in_podman);
        for n in &plan.notes {
            tracing::warn!("{n}");
        }
        let mut resolved = BTreeMap::new();
        for (name, r) in resolutions {
            if let Resolution::Found(f) = r
                && plan.upsert.contains(&name)
            {
                let mac = macs.remove(&name).unwrap_or_default();
                resolved.insert(name, (f, mac));
            }
        }
        Ok(PreparedSecrets {
            plan,
            resolved,
            consumers,
            sources: sources.iter().map(SecretSourceSpec::kind).collect(),
        })
    }

    /// Writes new and changed values into podman. The ownership row (with a restart
    /// mark for a changed value) is recorded *before* podman is touched, so legerd
    /// never loses track of a secret it created.
    pub async fn write(
        &self,
        prepared: &PreparedSecrets,
        store: &Arc<Mutex<Store>>,
    ) -> Result<Vec<String>, SecretError> {
        let mut done = Vec::new();
        let present = if prepared.resolved.is_empty() {
            BTreeSet::new()
        } else {
            self.podman.list().await?
        };
        for (name, (found, mac)) in &prepared.resolved {
            let consumers: Vec<String> = prepared
                .consumers
                .get(name)
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default();
            let (n, m, source, version) = (
                name.clone(),
                mac.clone(),
                found.source,
                found.version.clone(),
            );
            let restart = prepared.plan.changed.contains(name);
            blocking::store(store, move |s| {
                s.upsert_owned_secret(&n, &m, source, &version, &consumers, restart)
            })
            .await?;
            let exists = present.contains(name);
            self.podman.upsert(name, &found.value, exists).await?;
            let verb = if exists { "replace" } else { "create" };
            tracing::info!(secret = %name, source = found.source, version = %found.version, "{verb}d podman secret");
            done.push(format!("{verb} secret {name}"));
        }
        Ok(done)
    }

    /// After a successful apply: consumers have restarted, so the restart marks go;
    /// secrets no desired unit references are removed from podman.
    pub async fn finish(
        &self,
        prepared: &PreparedSecrets,
        store: &Arc<Mutex<Store>>,
    ) -> Result<Vec<String>, SecretError> {
        let mut done = Vec::new();
        let consumers: Vec<(String, Vec<String>)> = prepared
            .consumers
            .iter()
            .map(|(name, units)| (name.clone(), units.iter().cloned().collect()))
            .collect();
        blocking::store(store, move |s| {
            s.clear_secret_restarts()?;
            consumers
                .iter()
                .try_for_each(|(name, units)| s.set_owned_secret_consumers(name, units))
        })
        .await?;
        for name in &prepared.plan.remove {
            self.podman.remove(name).await?;
            let n = name.clone();
            blocking::store(store, move |s| s.remove_owned_secret(&n)).await?;
            tracing::info!(secret = %name, "removed podman secret no unit references");
            done.push(format!("remove secret {name}"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(mac: &str, pending: bool) -> OwnedSecret {
        OwnedSecret {
            name: String::new(),
            mac: mac.into(),
            source: "local".into(),
            version: "1".into(),
            consumers: vec![],
            restart_pending: pending,
            written_at: String::new(),
        }
    }

    fn found() -> Resolution {
        Resolution::Found(Resolved {
            value: SecretValue::from(b"v".to_vec()),
            source: "local",
            version: "1".into(),
        })
    }

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    fn consumers_of(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(s, u)| ((*s).to_owned(), set(u)))
            .collect()
    }

    #[test]
    fn decide_new_secret_is_created_without_restart() {
        let c = consumers_of(&[("db", &["db.service"])]);
        let r = BTreeMap::from([("db".to_owned(), found())]);
        let m = BTreeMap::from([("db".to_owned(), "m1".to_owned())]);
        let p = decide(&c, &r, &m, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(p.upsert, set(&["db"]));
        assert!(p.changed.is_empty() && p.blocked.is_empty());
    }

    #[test]
    fn decide_unchanged_value_does_nothing_and_changed_value_restarts() {
        let c = consumers_of(&[("db", &["db.service"]), ("api", &["api.service"])]);
        let r = BTreeMap::from([("db".to_owned(), found()), ("api".to_owned(), found())]);
        let m = BTreeMap::from([
            ("db".to_owned(), "m1".to_owned()),
            ("api".to_owned(), "new".to_owned()),
        ]);
        let o = BTreeMap::from([
            ("db".to_owned(), owned("m1", false)),
            ("api".to_owned(), owned("old", false)),
        ]);
        let p = decide(&c, &r, &m, &o, &set(&["db", "api"]));
        assert_eq!(p.upsert, set(&["api"]));
        assert_eq!(p.changed, set(&["api"]));
        // Deleted by hand with the same value: recreated, nobody restarts.
        let p = decide(&c, &r, &m, &o, &set(&["api"]));
        assert_eq!(p.upsert, set(&["api", "db"]));
        assert_eq!(p.changed, set(&["api"]));
    }

    #[test]
    fn decide_source_down_keeps_last_value_and_restarts_nothing() {
        let c = consumers_of(&[("db", &["db.service"])]);
        let r = BTreeMap::from([(
            "db".to_owned(),
            Resolution::Unavailable("setec source http://x: connection refused".into()),
        )]);
        let o = BTreeMap::from([("db".to_owned(), owned("m1", false))]);
        let p = decide(&c, &r, &BTreeMap::new(), &o, &set(&["db"]));
        assert!(p.upsert.is_empty() && p.changed.is_empty() && p.blocked.is_empty());
        assert!(
            p.notes[0].contains("keeping the last good value"),
            "{:?}",
            p.notes
        );
        // Never had a value: the consumers wait.
        let p = decide(&c, &r, &BTreeMap::new(), &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(p.blocked["db.service"], set(&["db"]));
    }

    #[test]
    fn decide_missing_blocks_only_its_consumers_and_unreferenced_is_removed() {
        let c = consumers_of(&[("db", &["db.service"]), ("api", &["api.service"])]);
        let r = BTreeMap::from([
            ("db".to_owned(), Resolution::Missing),
            ("api".to_owned(), found()),
        ]);
        let m = BTreeMap::from([("api".to_owned(), "m".to_owned())]);
        let o = BTreeMap::from([("old".to_owned(), owned("x", false))]);
        let p = decide(&c, &r, &m, &o, &set(&["old"]));
        assert_eq!(p.blocked.keys().collect::<Vec<_>>(), ["db.service"]);
        assert_eq!(p.upsert, set(&["api"]));
        assert_eq!(p.remove, set(&["old"]));
    }

    #[test]
    fn decide_leaves_foreign_podman_secret_alone() {
        let c = consumers_of(&[("tls", &["web.service"])]);
        let r = BTreeMap::from([("tls".to_owned(), found())]);
        let m = BTreeMap::from([("tls".to_owned(), "m".to_owned())]);
        let p = decide(&c, &r, &m, &BTreeMap::new(), &set(&["tls"]));
        assert!(p.upsert.is_empty() && p.blocked.is_empty());
        assert!(p.notes[0].contains("not created by legerd"));
        // Missing at every source but made by hand: the unit may use it.
        let r = BTreeMap::from([("tls".to_owned(), Resolution::Missing)]);
        let p = decide(&c, &r, &m, &BTreeMap::new(), &set(&["tls"]));
        assert!(p.blocked.is_empty());
    }

    #[test]
    fn secret_value_debug_is_redacted() {
        let v = SecretValue::from(b"hunter2".to_vec());
        assert!(!format!("{v:?}").contains("hunter2"));
        let r = found();
        assert!(!format!("{r:?}").contains("\"v\""));
    }

    #[test]
    fn secret_names_are_checked() {
        assert!(validate_name("db-pass.v2_x").is_ok());
        for bad in ["", "-x", "a/b", "a b", "../x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
