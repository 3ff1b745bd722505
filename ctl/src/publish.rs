//! `legerctl publish` and `legerctl keygen`: build a leger.run manifest tree from a
//! folder of apps, offline, for any static server, bucket or CDN to serve.
//!
//! Apps are read and validated by `legerd`'s own code (the dir source's content rules,
//! then `assemble`), so a tree that publishes is a tree legerd accepts. A version is
//! written whole into a hidden temporary folder and renamed to `v{N}/`; `latest.json`
//! is replaced last, atomically, so a server never points at a half-written version.
//! Older versions stay, which is what lets a host pin one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use leger_api_types::manifest::{
    LATEST_FILE, Latest, MANIFEST_FILE, SIGNATURE_SUFFIX, validate_file_name, version_dir,
};
use leger_config::Limits;
use legerd::assemble::assemble;
use legerd::source::manifest::manifest_for;
use sha2::{Digest, Sha256};

/// Why publishing or key generation failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The apps folder could not be read or breaks the content rules.
    #[error("cannot read apps from {}: {reason}", dir.display())]
    Source {
        /// The apps folder.
        dir: PathBuf,
        /// What the dir source reported.
        reason: String,
    },
    /// The apps do not validate; legerd would refuse them too.
    #[error("apps in {} do not validate, nothing was published:\n{reason}", dir.display())]
    Invalid {
        /// The apps folder.
        dir: PathBuf,
        /// Every diagnostic.
        reason: String,
    },
    /// A file name legerd would refuse in a manifest.
    #[error("file {name:?} cannot go in a manifest: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The output folder holds a `latest.json` that does not parse.
    #[error("{} is malformed ({reason}); fix or remove it before publishing", path.display())]
    BadLatest {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// The signing key could not be read.
    #[error(
        "cannot use signing key {}: {reason}; create one with `legerctl keygen`",
        path.display()
    )]
    Key {
        /// The key file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// `keygen` would overwrite a key.
    #[error("{} already exists; pick another name or remove it first", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PublishError {
    let path = path.to_owned();
    move |source| PublishError::Io { what, path, source }
}

/// What [`publish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The new version number.
    pub version: u64,
    /// The new version's folder.
    pub dir: PathBuf,
    /// Apps in it.
    pub apps: Vec<String>,
    /// Files listed in its manifest.
    pub files: usize,
    /// Whether a `manifest.json.sig` was written.
    pub signed: bool,
    /// `v{N}@sha256:<digest>`, the revision legerd will report for it.
    pub revision: String,
}

/// Overlays to keep in a published tree, and the one composition to check offline.
#[derive(Debug, Clone, Default)]
pub struct OverlayCheck {
    /// The templates desired.toml will use (`hosts/{host}/apps`); their folders are
    /// published whole.
    pub overlays: Vec<String>,
    /// Check the composition of this host (default: one that matches no host folder).
    pub host: Option<String>,
    /// ... in these groups.
    pub groups: Vec<String>,
}

/// Builds version `N+1` of the tree in `out_dir` from the apps in `apps_dir`.
///
/// `generated_at` is the only field that varies between two runs over the same input;
/// `key` signs the exact manifest bytes with minisign.
pub fn publish(
    apps_dir: &Path,
    out_dir: &Path,
    key: Option<&minisign::SecretKey>,
    generated_at: &str,
    limits: &Limits,
    keys: legerd::quadlet::KeyTable,
) -> Result<Published, PublishError> {
    publish_with(
        apps_dir,
        out_dir,
        key,
        generated_at,
        limits,
        keys,
        &OverlayCheck::default(),
    )
}

/// [`publish`] for a tree with overlay folders: the common layer's apps and every
/// file under the templates' first folders are published, and the composition of
/// `check.host` in `check.groups` is validated the way legerd will build it.
pub fn publish_with(
    apps_dir: &Path,
    out_dir: &Path,
    key: Option<&minisign::SecretKey>,
    generated_at: &str,
    limits: &Limits,
    keys: legerd::quadlet::KeyTable,
    check: &OverlayCheck,
) -> Result<Published, PublishError> {
    let target = legerd::quadlet::Target::offline(keys);
    let crate::validate::Composed {
        dir: abs,
        whole: snapshot,
        composition,
        checked,
    } = crate::validate::compose_tree(apps_dir, None, check, limits).map_err(|e| match e {
        crate::validate::ValidateError::Source { dir, reason } => {
            PublishError::Source { dir, reason }
        }
    })?;
    let tree = assemble(&checked, limits, &target).map_err(|e| PublishError::Invalid {
        dir: abs.clone(),
        reason: e.to_string(),
    })?;
    // The common layer's apps are published even when the checked host removes them.
    let common = if composition.is_some() {
        assemble(&snapshot, limits, &target).map_err(|e| PublishError::Invalid {
            dir: abs.clone(),
            reason: e.to_string(),
        })?
    } else {
        tree.clone()
    };
    let roots: Vec<&str> = check
        .overlays
        .iter()
        .map(|t| leger_api_types::overlay::template_root(t))
        .collect();
    // Every file of every app folder legerd accepts: quadlets, companions and
    // leger.toml, and the overlay folders whole (each host composes its own tree from
    // them). Files outside app folders would be refused by legerd's name rules.
    let mut files = BTreeMap::new();
    for (name, bytes) in &snapshot.files {
        let top = name.split('/').next().unwrap_or_default();
        let keep = name.contains('/') && (common.apps.contains_key(top) || roots.contains(&top));
        if !keep {
            continue;
        }
        validate_file_name(name).map_err(|e| PublishError::BadName {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        files.insert(name.clone(), bytes.to_vec());
    }

    let version = next_version(out_dir)?;
    let mut manifest = manifest_for(version, generated_at.to_owned(), &files);
    let apps: Vec<String> = tree.apps.keys().cloned().collect();
    manifest
        .metadata
        .insert("apps".into(), serde_json::json!(apps));
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    manifest_bytes.push(b'\n');
    let digest = hex::encode(Sha256::digest(&manifest_bytes));

    let out_dir = &std::path::absolute(out_dir).map_err(io("resolving", out_dir))?;
    std::fs::create_dir_all(out_dir).map_err(io("creating", out_dir))?;
    let final_dir = out_dir.join(version_dir(version));
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.", version_dir(version)))
        .tempdir_in(out_dir)
        .map_err(io("creating a staging folder in", out_dir))?;
    for (name, bytes) in &files {
        let path = staging.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&path, bytes).map_err(io("writing", &path))?;
    }
    let manifest_path = staging.path().join(MANIFEST_FILE);
    std::fs::write(&manifest_path, &manifest_bytes).map_err(io("writing", &manifest_path))?;
    if let Some(sk) = key {
        // A fixed trusted comment keeps the signature free of a wall-clock timestamp.
        let comment = format!("leger manifest v{version} sha256:{digest}");
        let sig = minisign::sign(
            None,
            sk,
            std::io::Cursor::new(&manifest_bytes),
            Some(&comment),
            Some("signature from legerctl publish"),
        )
        .map_err(|e| PublishError::Key {
            path: PathBuf::from("(loaded key)"),
            reason: e.to_string(),
        })?;
        let sig_path = staging
            .path()
            .join(format!("{MANIFEST_FILE}{SIGNATURE_SUFFIX}"));
        std::fs::write(&sig_path, sig.into_string()).map_err(io("writing", &sig_path))?;
    }
    // Folders of a static tree must be readable by whatever serves it.
    set_tree_readable(staging.path())?;
    let staged = staging.keep();
    std::fs::rename(&staged, &final_dir).map_err(io("renaming into place", &final_dir))?;

    let latest = Latest {
        version,
        manifest_url: format!("{}/{MANIFEST_FILE}", version_dir(version)),
    };
    let mut latest_bytes = serde_json::to_vec_pretty(&latest).expect("latest always serializes");
    latest_bytes.push(b'\n');
    let latest_path = out_dir.join(LATEST_FILE);
    leger_config::fs::write_atomic(&latest_path, &latest_bytes, 0o644)
        .map_err(io("writing", &latest_path))?;
    Ok(Published {
        version,
        dir: final_dir,
        apps,
        files: files.len(),
        signed: key.is_some(),
        revision: format!("v{version}@sha256:{digest}"),
    })
}

/// One more than the highest version in `out_dir`, from `latest.json` and from the
/// `v{N}/` folders present, so a republish never overwrites a version.
fn next_version(out_dir: &Path) -> Result<u64, PublishError> {
    let mut highest = 0;
    let latest_path = out_dir.join(LATEST_FILE);
    match std::fs::read(&latest_path) {
        Ok(bytes) => {
            let latest: Latest =
                serde_json::from_slice(&bytes).map_err(|e| PublishError::BadLatest {
                    path: latest_path.clone(),
                    reason: e.to_string(),
                })?;
            highest = latest.version;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("reading", &latest_path)(e)),
    }
    if let Ok(entries) = std::fs::read_dir(out_dir) {
        for entry in entries.flatten() {
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('v'))
                .and_then(|n| n.parse::<u64>().ok())
            {
                highest = highest.max(n);
            }
        }
    }
    Ok(highest + 1)
}

fn set_tree_readable(dir: &Path) -> Result<(), PublishError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io("setting permissions on", dir))?;
    for entry in std::fs::read_dir(dir).map_err(io("reading", dir))? {
        let entry = entry.map_err(io("reading", dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io("reading", &path))?.is_dir() {
            set_tree_readable(&path)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(io("setting permissions on", &path))?;
        }
    }
    Ok(())
}

/// Reads an unencrypted minisign secret key as written by [`keygen`].
pub fn load_secret_key(path: &Path) -> Result<minisign::SecretKey, PublishError> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    let key_error = |reason: String| PublishError::Key {
        path: path.to_owned(),
        reason,
    };
    minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| key_error(e.to_string()))?
        // An empty password reads an unencrypted key without prompting.
        .into_secret_key(Some(String::new()))
        .map_err(|e| {
            key_error(format!(
                "{e} (only unencrypted keys from legerctl keygen are supported)"
            ))
        })
}

/// What [`keygen`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// The secret key, mode 0600.
    pub secret: PathBuf,
    /// The public key file (minisign format).
    pub public: PathBuf,
    /// The base64 public key, the value for `public_keys` in desired.toml.
    pub public_base64: String,
}

/// Creates a minisign key pair: `OUT.key` (secret, unencrypted, mode 0600, for a CI
/// secret store) and `OUT.pub`. Refuses to overwrite either.
pub fn keygen(out: &Path) -> Result<KeyFiles, PublishError> {
    let out = &std::path::absolute(out).map_err(io("resolving", out))?;
    let with_ext = |ext: &str| {
        let mut s = out.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let (secret, public) = (with_ext(".key"), with_ext(".pub"));
    for p in [&secret, &public] {
        if p.exists() {
            return Err(PublishError::Exists { path: p.clone() });
        }
    }
    // An empty password leaves the key unencrypted but, unlike
    // `generate_unencrypted_keypair`, writes the checksum that loading verifies.
    let kp = minisign::KeyPair::generate_encrypted_keypair(Some(String::new())).map_err(|e| {
        PublishError::Key {
            path: secret.clone(),
            reason: e.to_string(),
        }
    })?;
    let key_error = |e: minisign::PError| PublishError::Key {
        path: secret.clone(),
        reason: e.to_string(),
    };
    let sk_text = kp
        .sk
        .to_box(Some("leger signing key (unencrypted)"))
        .map_err(key_error)?
        .into_string();
    let pk_text = kp.pk.to_box().map_err(key_error)?.into_string();
    leger_config::fs::write_atomic(&secret, sk_text.as_bytes(), 0o600)
        .map_err(io("writing", &secret))?;
    leger_config::fs::write_atomic(&public, pk_text.as_bytes(), 0o644)
        .map_err(io("writing", &public))?;
    Ok(KeyFiles {
        secret,
        public,
        public_base64: kp.pk.to_base64(),
    })
}
