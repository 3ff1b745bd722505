//! `desired.toml`: the single document that says what a host should run.
//!
//! Both binaries parse it with the same code so that `legerctl set-desired` refuses
//! exactly what `legerd` would refuse. Every table is `deny_unknown_fields`: a typo in
//! a hand-edited file must be an error that names the key, never a silently ignored
//! setting.

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where apps come from and how to converge them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// The source of the app tree.
    pub source: SourceSpec,
    /// How legerd converges the source onto the host.
    #[serde(default)]
    pub policy: Policy,
    /// Where secret values come from; absent means the local store, then `git-age`.
    #[serde(default, skip_serializing_if = "SecretsSpec::is_default")]
    pub secrets: SecretsSpec,
}

/// The `[secrets]` table: the sources a secret name is looked up in, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSpec {
    /// `[[secrets.sources]]`, first match wins.
    #[serde(default = "default_secret_sources")]
    pub sources: Vec<SecretSourceSpec>,
}

impl Default for SecretsSpec {
    fn default() -> Self {
        SecretsSpec {
            sources: default_secret_sources(),
        }
    }
}

impl SecretsSpec {
    /// True when the table says nothing the defaults do not, so it is not written out.
    pub fn is_default(&self) -> bool {
        *self == SecretsSpec::default()
    }
}

fn default_secret_sources() -> Vec<SecretSourceSpec> {
    vec![
        SecretSourceSpec::Local,
        SecretSourceSpec::GitAge { ssh_identity: None },
    ]
}

/// One secret source. The `kind` key selects the variant; read flat through
/// [`RawSecretSource`] for the same reason as [`SourceSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSecretSource", into = "RawSecretSource")]
pub enum SecretSourceSpec {
    /// legerd's own age-encrypted store, filled by `legerctl secrets set`.
    Local,
    /// `secrets/NAME.age` files in the source tree.
    GitAge {
        /// An SSH ed25519 private key (e.g. the host key) accepted as an extra identity.
        ssh_identity: Option<PathBuf>,
    },
    /// A setec server.
    Setec {
        /// Base URL, e.g. `https://secrets.example.ts.net`.
        url: String,
        /// A file holding a bearer token; none on a trusted network.
        token_file: Option<PathBuf>,
        /// Prefix added to a secret's name on the server (`prod/`).
        prefix: Option<String>,
    },
    /// The leger.run secret service.
    LegerRun {
        /// Base URL.
        url: String,
        /// A file holding the bearer token.
        token_file: PathBuf,
    },
}

impl SecretSourceSpec {
    /// The kind as written in desired.toml, also shown by `legerctl secrets list`.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretSourceSpec::Local => "local",
            SecretSourceSpec::GitAge { .. } => "git-age",
            SecretSourceSpec::Setec { .. } => "setec",
            SecretSourceSpec::LegerRun { .. } => "leger-run",
        }
    }
}

/// A `[[secrets.sources]]` entry as written, every key optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretSource {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_identity: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

impl TryFrom<RawSecretSource> for SecretSourceSpec {
    type Error = String;

    fn try_from(r: RawSecretSource) -> Result<Self, String> {
        let kind = r.kind.clone();
        let refuse = |keys: &[(&str, bool)]| -> Result<(), String> {
            match keys.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(format!(
                    "key `{key}` is not valid for secret source kind = \"{kind}\""
                )),
                None => Ok(()),
            }
        };
        let abs = |p: &PathBuf, key: &str| -> Result<(), String> {
            if p.is_absolute() {
                Ok(())
            } else {
                Err(format!("{key}: {:?} must be absolute", p.display()))
            }
        };
        let http_url = |u: Option<String>| -> Result<String, String> {
            let u = u.ok_or(format!("secret source kind = \"{kind}\" needs `url`"))?;
            match url::Url::parse(&u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => {
                    Ok(u.trim_end_matches('/').to_owned())
                }
                _ => Err(format!("url: {u:?} is not an http:// or https:// URL")),
            }
        };
        match r.kind.as_str() {
            "local" => {
                refuse(&[
                    ("url", r.url.is_some()),
                    ("token_file", r.token_file.is_some()),
                    ("ssh_identity", r.ssh_identity.is_some()),
                    ("prefix", r.prefix.is_some()),
                ])?;
                Ok(SecretSourceSpec::Local)
            }
            "git-age" => {
                refuse(&[
                    ("url", r.url.is_some()),
                    ("token_file", r.token_file.is_some()),
                    ("prefix", r.prefix.is_some()),
                ])?;
                if let Some(p) = &r.ssh_identity {
                    abs(p, "ssh_identity")?;
                }
                Ok(SecretSourceSpec::GitAge {
                    ssh_identity: r.ssh_identity,
                })
            }
            "setec" => {
                refuse(&[("ssh_identity", r.ssh_identity.is_some())])?;
                if let Some(p) = &r.token_file {
                    abs(p, "token_file")?;
                }
                Ok(SecretSourceSpec::Setec {
                    url: http_url(r.url)?,
                    token_file: r.token_file,
                    prefix: r.prefix,
                })
            }
            "leger-run" => {
                refuse(&[
                    ("ssh_identity", r.ssh_identity.is_some()),
                    ("prefix", r.prefix.is_some()),
                ])?;
                let token_file = r
                    .token_file
                    .ok_or("secret source kind = \"leger-run\" needs `token_file`")?;
                abs(&token_file, "token_file")?;
                Ok(SecretSourceSpec::LegerRun {
                    url: http_url(r.url)?,
                    token_file,
                })
            }
            other => Err(format!(
                "unknown secret source kind {other:?}; expected \"local\", \"git-age\", \"setec\" or \"leger-run\""
            )),
        }
    }
}

impl From<SecretSourceSpec> for RawSecretSource {
    fn from(s: SecretSourceSpec) -> Self {
        let kind = s.kind().to_owned();
        match s {
            SecretSourceSpec::Local => RawSecretSource {
                kind,
                ..RawSecretSource::default()
            },
            SecretSourceSpec::GitAge { ssh_identity } => RawSecretSource {
                kind,
                ssh_identity,
                ..RawSecretSource::default()
            },
            SecretSourceSpec::Setec {
                url,
                token_file,
                prefix,
            } => RawSecretSource {
                kind,
                url: Some(url),
                token_file,
                prefix,
                ..RawSecretSource::default()
            },
            SecretSourceSpec::LegerRun { url, token_file } => RawSecretSource {
                kind,
                url: Some(url),
                token_file: Some(token_file),
                ..RawSecretSource::default()
            },
        }
    }
}

/// One of the source kinds. The `kind` key selects the variant.
///
/// It is read through [`RawSource`], a flat table, rather than serde's internally
/// tagged enums: those buffer the table and lose the line and key of an error, and an
/// error that does not say where it is helps nobody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSource", into = "RawSource")]
pub enum SourceSpec {
    /// A git repository fetched with gix.
    Git(GitSourceSpec),
    /// A local folder watched with inotify.
    Dir(DirSourceSpec),
    /// A leger.run-format HTTP manifest (see [`crate::manifest`]).
    Manifest(ManifestSourceSpec),
}

/// The `[source]` table as written, every key optional; see [`SourceSpec`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    kind: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_git_url"
    )]
    url: Option<String>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_str"
    )]
    poll_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_rewrite: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<ManifestVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_cross_origin_redirects: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known_hosts_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    overlays: Vec<String>,
}

impl TryFrom<RawSource> for SourceSpec {
    type Error = String;

    fn try_from(r: RawSource) -> Result<Self, String> {
        let not_for =
            |key: &str, kind: &str| format!("key `{key}` is not valid for kind = \"{kind}\"");
        let manifest_only = [
            ("version", r.version.is_some()),
            ("public_keys", r.public_keys.is_some()),
            ("token_file", r.token_file.is_some()),
            (
                "allow_cross_origin_redirects",
                r.allow_cross_origin_redirects.is_some(),
            ),
        ];
        match r.kind.as_str() {
            "git" | "dir" => {
                if let Some((key, _)) = manifest_only.iter().find(|(_, set)| *set) {
                    return Err(not_for(key, &r.kind));
                }
            }
            _ => {}
        }
        for (key, set) in [
            ("credentials_file", r.credentials_file.is_some()),
            ("ssh_key_file", r.ssh_key_file.is_some()),
            ("known_hosts_file", r.known_hosts_file.is_some()),
        ] {
            if r.kind != "git" && set {
                return Err(not_for(key, &r.kind));
            }
        }
        for (i, t) in r.overlays.iter().enumerate() {
            crate::overlay::validate_template(t).map_err(|e| format!("overlays[{i}]: {e}"))?;
        }
        let overlays = r.overlays;
        match r.kind.as_str() {
            "git" => {
                let url = r.url.ok_or("kind = \"git\" needs `url`")?;
                refuse_url_credentials(&url).map_err(|e| format!("url: {e}"))?;
                crate::ssh_url::check_keys(
                    &url,
                    r.ssh_key_file.as_deref(),
                    r.known_hosts_file.as_deref(),
                    r.credentials_file.as_deref(),
                )?;
                if let Some(p) = &r.credentials_file
                    && !p.is_absolute()
                {
                    return Err(format!(
                        "credentials_file: {:?} must be absolute",
                        p.display()
                    ));
                }
                let path = match r.path {
                    Some(p) => {
                        validate_subpath(&p).map_err(|e| format!("path: {e}"))?;
                        let t = p.trim_matches('/');
                        (!t.is_empty()).then(|| t.to_owned())
                    }
                    None => None,
                };
                Ok(SourceSpec::Git(GitSourceSpec {
                    url,
                    reference: r.reference.unwrap_or_else(default_ref),
                    path,
                    poll_interval: r.poll_interval.unwrap_or_else(default_poll_interval),
                    allow_rewrite: r.allow_rewrite.unwrap_or(false),
                    credentials_file: r.credentials_file,
                    ssh_key_file: r.ssh_key_file,
                    known_hosts_file: r.known_hosts_file,
                    overlays,
                }))
            }
            "dir" => {
                for (key, set) in [
                    ("url", r.url.is_some()),
                    ("ref", r.reference.is_some()),
                    ("poll_interval", r.poll_interval.is_some()),
                    ("allow_rewrite", r.allow_rewrite.is_some()),
                ] {
                    if set {
                        return Err(not_for(key, "dir"));
                    }
                }
                let path = PathBuf::from(r.path.ok_or("kind = \"dir\" needs `path`")?);
                if !path.is_absolute() {
                    return Err(format!("path: {:?} must be absolute", path.display()));
                }
                Ok(SourceSpec::Dir(DirSourceSpec { path, overlays }))
            }
            "manifest" => {
                for (key, set) in [
                    ("ref", r.reference.is_some()),
                    ("path", r.path.is_some()),
                    ("allow_rewrite", r.allow_rewrite.is_some()),
                ] {
                    if set {
                        return Err(not_for(key, "manifest"));
                    }
                }
                let url = r.url.ok_or("kind = \"manifest\" needs `url`")?;
                validate_manifest_url(&url).map_err(|e| format!("url: {e}"))?;
                let public_keys = r.public_keys.unwrap_or_default();
                for (i, key) in public_keys.iter().enumerate() {
                    validate_public_key(key).map_err(|e| format!("public_keys[{i}]: {e}"))?;
                }
                let token_file = match r.token_file {
                    Some(t) => {
                        let p = PathBuf::from(t);
                        if !p.is_absolute() {
                            return Err(format!("token_file: {:?} must be absolute", p.display()));
                        }
                        Some(p)
                    }
                    None => None,
                };
                Ok(SourceSpec::Manifest(ManifestSourceSpec {
                    url,
                    version: r.version.unwrap_or_default(),
                    poll_interval: r.poll_interval.unwrap_or_else(default_poll_interval),
                    public_keys,
                    token_file,
                    allow_cross_origin_redirects: r.allow_cross_origin_redirects.unwrap_or(false),
                    overlays,
                }))
            }
            other => Err(format!(
                "unknown source kind {other:?}; expected \"git\", \"dir\" or \"manifest\""
            )),
        }
    }
}

impl From<SourceSpec> for RawSource {
    fn from(s: SourceSpec) -> Self {
        match s {
            SourceSpec::Git(g) => RawSource {
                kind: "git".into(),
                url: Some(g.url),
                reference: Some(g.reference),
                path: g.path,
                poll_interval: Some(g.poll_interval),
                allow_rewrite: g.allow_rewrite.then_some(true),
                credentials_file: g.credentials_file,
                ssh_key_file: g.ssh_key_file,
                known_hosts_file: g.known_hosts_file,
                overlays: g.overlays,
                ..RawSource::default()
            },
            SourceSpec::Dir(d) => RawSource {
                kind: "dir".into(),
                path: Some(d.path.to_string_lossy().into_owned()),
                overlays: d.overlays,
                ..RawSource::default()
            },
            SourceSpec::Manifest(m) => RawSource {
                kind: "manifest".into(),
                url: Some(m.url),
                version: Some(m.version),
                poll_interval: Some(m.poll_interval),
                public_keys: (!m.public_keys.is_empty()).then_some(m.public_keys),
                token_file: m.token_file.map(|p| p.to_string_lossy().into_owned()),
                allow_cross_origin_redirects: m.allow_cross_origin_redirects.then_some(true),
                overlays: m.overlays,
                ..RawSource::default()
            },
        }
    }
}

fn de_opt_git_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_git_url(d).map(Some)
}

pub(crate) mod opt_duration_str {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_str::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration_str::deserialize(d).map(Some)
    }
}

/// A git source: a repository, a ref, and an optional sub-folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSourceSpec {
    /// `https://`, `http://` (loopback tests, trusted networks), `ssh://user@host[:port]/path`,
    /// scp-like `user@host:path`, `file://` or a local path.
    #[serde(deserialize_with = "de_git_url")]
    pub url: String,
    /// A branch, a tag, or a full 40-hex commit id (a pin that ignores later pushes).
    #[serde(rename = "ref", default = "default_ref")]
    pub reference: String,
    /// Sub-folder of the repository that holds one folder per app.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_subpath"
    )]
    pub path: Option<String>,
    /// How often the remote ref is compared; jitter is added by legerd.
    #[serde(default = "default_poll_interval", with = "duration_str")]
    pub poll_interval: Duration,
    /// Accept a new commit that does not descend from the applied one (a force-push).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_rewrite: bool,
    /// A file (root-only) with the credentials for an http(s) remote: one line, either a
    /// token or a `user:password` pair. Credentials never go in the url, which status,
    /// history and the journal show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// For an ssh url: the private key legerd logs in with (root-only, mode 0600; its
    /// content is never read by legerd, only handed to `ssh -i`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_file: Option<PathBuf>,
    /// For an ssh url: the server's host key(s) in known_hosts format. Checking is strict:
    /// a host key missing from this file, or different, fails the fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// Overlay templates (`hosts/{host}/apps`), later layers replacing earlier app
    /// folders whole; see [`crate::overlay`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<String>,
}

/// A local folder source, converged on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSourceSpec {
    /// Absolute path of the folder that holds one folder per app.
    #[serde(deserialize_with = "de_abs_path")]
    pub path: PathBuf,
    /// Overlay templates (`hosts/{host}/apps`), later layers replacing earlier app
    /// folders whole; see [`crate::overlay`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<String>,
}

/// A leger.run manifest source: a static tree served over HTTP(S).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSourceSpec {
    /// The tree's base URL (`https://host/fleet/`); `latest.json` and `v{N}/` sit under it.
    pub url: String,
    /// Follow `latest.json`, or pin one version (the only way to go back to an older one).
    pub version: ManifestVersion,
    /// How often `latest.json` is polled; jitter is added by legerd.
    #[serde(with = "duration_str")]
    pub poll_interval: Duration,
    /// minisign public keys (the base64 line of a `.pub` file). When any is set, every
    /// manifest must carry a `manifest.json.sig` that verifies against one of them.
    pub public_keys: Vec<String>,
    /// A file holding a bearer token sent with every request. The token itself never goes
    /// in desired.toml, which `legerctl status` shows and people paste into tickets.
    pub token_file: Option<PathBuf>,
    /// Follow a redirect to another scheme or host. Off by default: a redirect is the
    /// easiest way to swap a trusted origin for another one.
    pub allow_cross_origin_redirects: bool,
    /// Overlay templates (`hosts/{host}/apps`), later layers replacing earlier app
    /// folders whole; see [`crate::overlay`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<String>,
}

impl ManifestSourceSpec {
    /// A manifest source with defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        ManifestSourceSpec {
            url: url.into(),
            version: ManifestVersion::Latest,
            poll_interval: default_poll_interval(),
            public_keys: Vec::new(),
            token_file: None,
            allow_cross_origin_redirects: false,
            overlays: Vec::new(),
        }
    }
}

/// `version = "latest"` or `version = N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestVersion {
    /// Follow `latest.json`; the version never goes backwards.
    #[default]
    Latest,
    /// Stay on this version, whatever `latest.json` says.
    Pinned(u64),
}

impl Serialize for ManifestVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ManifestVersion::Latest => s.serialize_str("latest"),
            ManifestVersion::Pinned(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ManifestVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ManifestVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"latest\" or a version number of 1 or more")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ManifestVersion, E> {
                if v == "latest" {
                    Ok(ManifestVersion::Latest)
                } else {
                    Err(E::custom(format!(
                        "invalid version {v:?}; use \"latest\" or a number such as 3"
                    )))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ManifestVersion, E> {
                if v < 1 {
                    return Err(E::custom(format!(
                        "invalid version {v}; versions start at 1"
                    )));
                }
                Ok(ManifestVersion::Pinned(v as u64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ManifestVersion, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks a manifest base URL: `https://` or `http://` with a host and no credentials.
pub fn validate_manifest_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("invalid url {url:?}: {e}; use https://host/path/"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!(
            "invalid url {url:?}: unsupported scheme {:?}; use https:// (or http:// on a trusted network)",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid url {url:?}: no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the url carries credentials; put a bearer token in token_file instead".to_owned(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "invalid url {url:?}: a base url takes no query or fragment"
        ));
    }
    Ok(())
}

/// Checks a minisign public key: the base64 line of a `.pub` file (`RW...`).
pub fn validate_public_key(key: &str) -> Result<(), String> {
    minisign_verify::PublicKey::from_base64(key.trim())
        .map(|_| ())
        .map_err(|e| {
            format!(
                "not a minisign public key ({e}); use the base64 line of the .pub file from `legerctl keygen`"
            )
        })
}

/// Convergence policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Remove apps that disappeared from the source (only ones legerd installed).
    #[serde(default = "yes")]
    pub prune: bool,
    /// Restore managed files edited or deleted by hand, restart managed units that stopped.
    #[serde(default = "yes")]
    pub self_heal: bool,
    /// Fetch and report, but change nothing on the host.
    #[serde(default)]
    pub suspend: bool,
    /// Allow a source that turns up with no apps at all to prune every installed app.
    /// Off by default: an empty tree is far more often a mistake (wrong path, bad merge)
    /// than a wish to remove everything (Argo CD's allowEmpty guard).
    #[serde(default)]
    pub allow_empty: bool,
    /// `auto` applies every new revision; `staged` fetches, validates and plans it,
    /// then waits for `legerctl approve`.
    #[serde(default, skip_serializing_if = "UpdateMode::is_auto")]
    pub mode: UpdateMode,
    /// In staged mode, the one revision legerd may apply (`legerctl approve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<String>,
    /// Hold the host at this revision, from legerd's own revision store, whatever the
    /// source says (`legerctl pin`, `legerctl rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// How new revisions reach the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    /// Apply each new revision as soon as it validates.
    #[default]
    Auto,
    /// Stage each new revision and apply it only once approved.
    Staged,
}

impl UpdateMode {
    fn is_auto(&self) -> bool {
        *self == UpdateMode::Auto
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            prune: true,
            self_heal: true,
            suspend: false,
            allow_empty: false,
            mode: UpdateMode::Auto,
            approved: None,
            pin: None,
        }
    }
}

/// Why a desired-state document was refused.
#[derive(Debug, thiserror::Error)]
pub enum DesiredStateError {
    /// The TOML did not parse or did not match the schema; the message names the key and line.
    #[error("invalid desired state: {0}")]
    Invalid(String),
}

impl DesiredState {
    /// Parses and validates a `desired.toml` document. The error never quotes a
    /// credential ([`crate::redact::redact_credentials`]): it goes to status and the
    /// journal.
    pub fn from_toml_str(text: &str) -> Result<Self, DesiredStateError> {
        toml::from_str(text).map_err(|e| {
            DesiredStateError::Invalid(crate::redact::redact_credentials(e.to_string().trim_end()))
        })
    }

    /// Renders the document as TOML, the way `legerctl` writes it.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("desired state always serializes")
    }

    /// The source's overlay templates, whatever its kind.
    pub fn overlays(&self) -> &[String] {
        match &self.source {
            SourceSpec::Git(g) => &g.overlays,
            SourceSpec::Dir(d) => &d.overlays,
            SourceSpec::Manifest(m) => &m.overlays,
        }
    }

    /// A short, human description of the source, for status and logs.
    pub fn source_summary(&self) -> String {
        match &self.source {
            SourceSpec::Git(g) => match &g.path {
                Some(p) => format!("git {}@{} ({})", g.url, g.reference, p),
                None => format!("git {}@{}", g.url, g.reference),
            },
            SourceSpec::Dir(d) => format!("dir {}", d.path.display()),
            SourceSpec::Manifest(m) => match m.version {
                ManifestVersion::Latest => format!("manifest {} (latest)", m.url),
                ManifestVersion::Pinned(n) => format!("manifest {} (pinned v{n})", m.url),
            },
        }
    }
}

impl GitSourceSpec {
    /// A git source with defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        GitSourceSpec {
            url: url.into(),
            reference: default_ref(),
            path: None,
            poll_interval: default_poll_interval(),
            allow_rewrite: false,
            credentials_file: None,
            ssh_key_file: None,
            known_hosts_file: None,
            overlays: Vec::new(),
        }
    }

    /// True when `ref` is a full commit id: the source is pinned and never moves by itself.
    pub fn is_pinned_commit(&self) -> bool {
        is_full_commit_id(&self.reference)
    }
}

/// True for a 40-hex-digit (sha1) or 64-hex-digit (sha256) object id.
pub fn is_full_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn default_ref() -> String {
    "main".to_owned()
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(60)
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Checks a git URL: `https://`, `http://`, `ssh://`, scp-like `user@host:path`,
/// `file://`, or an absolute local path.
pub fn validate_git_url(url: &str) -> Result<(), String> {
    if url.starts_with('/') {
        return Ok(());
    }
    if crate::ssh_url::is_ssh_url(url) {
        return crate::ssh_url::validate(url);
    }
    let parsed = url::Url::parse(url).map_err(|e| {
        format!("invalid url {url:?}: {e}; use https://, http://, ssh://, user@host:path, file:// or an absolute path")
    })?;
    match parsed.scheme() {
        "https" | "http" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(format!("invalid url {url:?}: no host"));
            }
            Ok(())
        }
        "file" => Ok(()),
        other => Err(format!(
            "invalid url {url:?}: unsupported scheme {other:?}; use https://, http://, ssh://, user@host:path, file:// or an absolute path"
        )),
    }
}

/// Refuses a url that carries a user name or password: desired.toml is shown by
/// `legerctl status` and pasted into tickets, and legerd logs its source. The error
/// points to `credentials_file`.
pub fn refuse_url_credentials(url: &str) -> Result<(), String> {
    if crate::ssh_url::is_ssh_url(url) {
        // An ssh user name is a login, not a secret; a password is refused by
        // `ssh_url::validate`.
        return Ok(());
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the url carries credentials; remove them and put a token (or user:password) in a root-only file named by `credentials_file` in [source]".to_owned(),
        );
    }
    Ok(())
}

fn de_git_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    validate_git_url(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn de_abs_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let p = PathBuf::deserialize(d)?;
    if !p.is_absolute() {
        return Err(serde::de::Error::custom(format!(
            "path {:?} must be absolute",
            p.display()
        )));
    }
    Ok(p)
}

/// Validates a relative sub-folder: no absolute path, no `..`, no empty components.
pub fn validate_subpath(p: &str) -> Result<(), String> {
    let trimmed = p.trim_matches('/');
    if p.starts_with('/') {
        return Err(format!(
            "path {p:?} must be relative to the repository root"
        ));
    }
    if trimmed.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("path {p:?} must not contain '.' or '..'"));
    }
    Ok(())
}

fn de_opt_subpath<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    validate_subpath(&s).map_err(serde::de::Error::custom)?;
    let t = s.trim_matches('/');
    Ok(if t.is_empty() {
        None
    } else {
        Some(t.to_owned())
    })
}

/// Serde helper for durations written the way people write them: `"60s"`, `"5m"`, `"1h 30m"`.
pub mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a duration in humantime form.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads a humantime duration and refuses zero, which would make a busy loop.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let dur = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (examples: \"30s\", \"5m\", \"1h\")"
            ))
        })?;
        if dur.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "duration {s:?} must be greater than zero"
            )));
        }
        Ok(dur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_parses_issue_example() {
        let d = DesiredState::from_toml_str(
            r#"
[source]
kind = "git"
url = "https://git.example.org/fleet.git"
ref = "main"
path = "apps"
poll_interval = "60s"

[policy]
prune = true
self_heal = true
suspend = false
"#,
        )
        .unwrap();
        let SourceSpec::Git(g) = &d.source else {
            panic!("git expected")
        };
        assert_eq!(g.reference, "main");
        assert_eq!(g.path.as_deref(), Some("apps"));
        assert_eq!(g.poll_interval, Duration::from_secs(60));
        assert!(d.policy.prune && d.policy.self_heal && !d.policy.suspend);
    }

    #[test]
    fn desired_round_trips_through_toml() {
        let mut g = GitSourceSpec::new("file:///srv/fleet.git");
        g.path = Some("apps".into());
        let d = DesiredState {
            source: SourceSpec::Git(g),
            policy: Policy::default(),
            secrets: SecretsSpec::default(),
        };
        assert_eq!(DesiredState::from_toml_str(&d.to_toml_string()).unwrap(), d);
        let dir = DesiredState {
            source: SourceSpec::Dir(DirSourceSpec {
                path: "/srv/apps".into(),
                overlays: Vec::new(),
            }),
            policy: Policy {
                suspend: true,
                ..Policy::default()
            },
            secrets: SecretsSpec {
                sources: vec![
                    SecretSourceSpec::Setec {
                        url: "http://127.0.0.1:8080".into(),
                        token_file: None,
                        prefix: Some("prod/".into()),
                    },
                    SecretSourceSpec::LegerRun {
                        url: "https://leger.example".into(),
                        token_file: "/etc/leger/token".into(),
                    },
                    SecretSourceSpec::GitAge {
                        ssh_identity: Some("/etc/ssh/ssh_host_ed25519_key".into()),
                    },
                ],
            },
        };
        assert_eq!(
            DesiredState::from_toml_str(&dir.to_toml_string()).unwrap(),
            dir
        );
    }

    fn err(text: &str) -> String {
        DesiredState::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn desired_unknown_key_is_named() {
        let e = err("[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\nbranch = \"main\"\n");
        assert!(e.contains("branch"), "{e}");
        let e = err("[source]\nkind = \"dir\"\npath = \"/x\"\n[policy]\npurge = true\n");
        assert!(e.contains("purge"), "{e}");
        let e = err("[source]\nkind = \"dir\"\npath = \"/x\"\n[extra]\n");
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn desired_wrong_type_is_named() {
        let e = err("[source]\nkind = \"dir\"\npath = \"/x\"\n[policy]\nprune = \"yes\"\n");
        assert!(e.contains("prune") || e.contains("line 5"), "{e}");
    }

    #[test]
    fn desired_bad_url_and_duration_are_explained() {
        let e = err("[source]\nkind = \"git\"\nurl = \"ftp://h/r.git\"\n");
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = err("[source]\nkind = \"git\"\nurl = \"not a url\"\n");
        assert!(e.contains("invalid url"), "{e}");
        let e =
            err("[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\npoll_interval = \"soon\"\n");
        assert!(
            e.contains("invalid duration") && e.contains("poll_interval"),
            "{e}"
        );
        let e =
            err("[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\npoll_interval = \"0s\"\n");
        assert!(e.contains("greater than zero"), "{e}");
    }

    #[test]
    fn desired_unknown_kind_and_escaping_paths_are_refused() {
        let e = err("[source]\nkind = \"svn\"\nurl = \"https://h/r\"\n");
        assert!(e.contains("svn"), "{e}");
        let e = err("[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\npath = \"../etc\"\n");
        assert!(e.contains(".."), "{e}");
        let e = err("[source]\nkind = \"dir\"\npath = \"relative/apps\"\n");
        assert!(e.contains("absolute"), "{e}");
    }

    const KEY: &str = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";

    #[test]
    fn desired_manifest_source_parses_and_round_trips() {
        let d = DesiredState::from_toml_str(&format!(
            "[source]\nkind = \"manifest\"\nurl = \"https://static.example/fleet/\"\nversion = 4\npoll_interval = \"30s\"\npublic_keys = [\"{KEY}\"]\ntoken_file = \"/etc/leger/token\"\n"
        ))
        .unwrap();
        let SourceSpec::Manifest(m) = &d.source else {
            panic!("manifest expected")
        };
        assert_eq!(m.version, ManifestVersion::Pinned(4));
        assert_eq!(m.poll_interval, Duration::from_secs(30));
        assert_eq!(m.public_keys, vec![KEY.to_owned()]);
        assert_eq!(m.token_file.as_deref(), Some(Path::new("/etc/leger/token")));
        assert_eq!(DesiredState::from_toml_str(&d.to_toml_string()).unwrap(), d);
        let latest = DesiredState::from_toml_str(
            "[source]\nkind = \"manifest\"\nurl = \"http://127.0.0.1:8080/\"\nversion = \"latest\"\n",
        )
        .unwrap();
        let SourceSpec::Manifest(m) = &latest.source else {
            panic!("manifest expected")
        };
        assert_eq!(m.version, ManifestVersion::Latest);
        assert!(m.public_keys.is_empty() && m.token_file.is_none());
        assert_eq!(
            DesiredState::from_toml_str(&latest.to_toml_string()).unwrap(),
            latest
        );
    }

    #[test]
    fn desired_manifest_bad_keys_are_named() {
        let base = "[source]\nkind = \"manifest\"\nurl = \"https://h/f/\"\n";
        let e = err(&format!("{base}ref = \"main\"\n"));
        assert!(
            e.contains("`ref` is not valid for kind = \"manifest\""),
            "{e}"
        );
        let e = err(&format!("{base}version = \"newest\"\n"));
        assert!(e.contains("newest") && e.contains("version"), "{e}");
        let e = err(&format!("{base}version = 0\n"));
        assert!(e.contains("versions start at 1"), "{e}");
        let e = err(&format!("{base}public_keys = [\"nope\"]\n"));
        assert!(
            e.contains("public_keys[0]") && e.contains("minisign"),
            "{e}"
        );
        let e = err(&format!("{base}token_file = \"token\"\n"));
        assert!(e.contains("token_file") && e.contains("absolute"), "{e}");
        let e = err(&format!("{base}tokenfile = \"/t\"\n"));
        assert!(e.contains("tokenfile"), "{e}");
        let e = err("[source]\nkind = \"manifest\"\nurl = \"https://u:p@h/f/\"\n");
        assert!(e.contains("token_file") && !e.contains("u:p"), "{e}");
        let e = err("[source]\nkind = \"manifest\"\nurl = \"file:///srv/f\"\n");
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = err("[source]\nkind = \"manifest\"\n");
        assert!(e.contains("needs `url`"), "{e}");
        let e = err("[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\nversion = 3\n");
        assert!(
            e.contains("`version` is not valid for kind = \"git\""),
            "{e}"
        );
    }

    #[test]
    fn desired_staged_policy_round_trips() {
        let d = DesiredState::from_toml_str(
            "[source]\nkind = \"dir\"\npath = \"/x\"\n[policy]\nmode = \"staged\"\napproved = \"abc\"\npin = \"def\"\n",
        )
        .unwrap();
        assert_eq!(d.policy.mode, UpdateMode::Staged);
        assert_eq!(d.policy.approved.as_deref(), Some("abc"));
        assert_eq!(DesiredState::from_toml_str(&d.to_toml_string()).unwrap(), d);
        let e = err("[source]\nkind = \"dir\"\npath = \"/x\"\n[policy]\nmode = \"manual\"\n");
        assert!(e.contains("manual"), "{e}");
    }

    #[test]
    fn commit_ids_are_recognised_as_pins() {
        let mut g = GitSourceSpec::new("/srv/r.git");
        assert!(!g.is_pinned_commit());
        g.reference = "0123456789abcdef0123456789abcdef01234567".into();
        assert!(g.is_pinned_commit());
        g.reference = "v1.2".into();
        assert!(!g.is_pinned_commit());
    }

    const DIR: &str = "[source]\nkind = \"dir\"\npath = \"/x\"\n";

    #[test]
    fn desired_secrets_default_to_local_then_git_age() {
        let d = DesiredState::from_toml_str(DIR).unwrap();
        let kinds: Vec<&str> = d.secrets.sources.iter().map(|s| s.kind()).collect();
        assert_eq!(kinds, ["local", "git-age"]);
        assert!(!d.to_toml_string().contains("secrets"));
    }

    #[test]
    fn desired_secrets_sources_parse_in_order() {
        let d = DesiredState::from_toml_str(&format!(
            "{DIR}[[secrets.sources]]\nkind = \"setec\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[secrets.sources]]\nkind = \"local\"\n"
        ))
        .unwrap();
        assert_eq!(
            d.secrets.sources,
            [
                SecretSourceSpec::Setec {
                    url: "http://127.0.0.1:9".into(),
                    token_file: None,
                    prefix: None
                },
                SecretSourceSpec::Local
            ]
        );
    }

    #[test]
    fn desired_secrets_bad_keys_are_named() {
        let e = err(&format!("{DIR}[secrets]\nsource = []\n"));
        assert!(e.contains("source"), "{e}");
        let e = err(&format!(
            "{DIR}[[secrets.sources]]\nkind = \"local\"\nurl = \"http://h\"\n"
        ));
        assert!(e.contains("`url`") && e.contains("local"), "{e}");
        let e = err(&format!(
            "{DIR}[[secrets.sources]]\nkind = \"setec\"\nurl = \"http://h\"\ntoken = \"x\"\n"
        ));
        assert!(e.contains("token"), "{e}");
        let e = err(&format!(
            "{DIR}[[secrets.sources]]\nkind = \"leger-run\"\nurl = \"https://h\"\n"
        ));
        assert!(e.contains("token_file"), "{e}");
        let e = err(&format!("{DIR}[[secrets.sources]]\nkind = \"vault\"\n"));
        assert!(e.contains("vault"), "{e}");
        let e = err(&format!(
            "{DIR}[[secrets.sources]]\nkind = \"setec\"\nurl = \"ftp://h\"\n"
        ));
        assert!(e.contains("ftp://h"), "{e}");
    }

    #[test]
    fn git_url_with_credentials_is_refused_and_points_to_credentials_file() {
        for url in [
            "https://bob:planted-token@git.example/r.git",
            "https://planted-token@git.example/r.git",
        ] {
            let text = format!("[source]\nkind = \"git\"\nurl = \"{url}\"\n");
            let e = DesiredState::from_toml_str(&text).unwrap_err().to_string();
            assert!(e.contains("credentials_file"), "{e}");
            assert!(
                !e.contains("planted-token"),
                "the error never repeats it: {e}"
            );
        }
        let d = DesiredState::from_toml_str(
            "[source]\nkind = \"git\"\nurl = \"https://git.example/r.git\"\ncredentials_file = \"/etc/leger/git-credentials\"\n",
        )
        .unwrap();
        let SourceSpec::Git(g) = &d.source else {
            panic!()
        };
        assert_eq!(
            g.credentials_file.as_deref(),
            Some(Path::new("/etc/leger/git-credentials"))
        );
        let again = DesiredState::from_toml_str(&d.to_toml_string()).unwrap();
        assert_eq!(again, d, "round trip");
        let e = DesiredState::from_toml_str(
            "[source]\nkind = \"dir\"\npath = \"/srv\"\ncredentials_file = \"/x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("credentials_file"), "{e}");
    }
}
