//! A leger.run manifest served over HTTP(S) as the source of desired state.
//!
//! Each poll sends one conditional `GET latest.json` (`If-None-Match` /
//! `If-Modified-Since` from the last good poll); a tree that did not change costs that
//! one request, answered 304. When it did change, the new `manifest.json` (and its
//! `.sig` when keys are configured) is fetched, every entry is checked, and only files
//! whose sha256 is not in the local cache (`<state_dir>/manifest/<url hash>/blobs/`)
//! are downloaded. Each file's size and digest are verified before the snapshot is
//! returned, so nothing unverified ever reaches staging.
//!
//! A pinned version polls its `v{N}/manifest.json` the same conditional way.
//!
//! The source is blocking (reqwest's blocking client) like the git source; the
//! reconciler runs it inside `spawn_blocking`. The client is built per fetch so it is
//! also dropped on that blocking thread: dropping a blocking client inside the async
//! runtime would panic. Retries are the controller's job: a failed fetch fails the pass,
//! and the pass is retried with backoff and jitter.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use leger_api_types::desired::{ManifestSourceSpec, ManifestVersion};
use leger_api_types::manifest::{
    FileType, LATEST_FILE, Latest, MANIFEST_FILE, Manifest, ManifestFile, NameProblem,
    SIGNATURE_SUFFIX, validate_file_name, version_dir,
};
use leger_config::Limits;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use sha2::{Digest, Sha256};
use url::Url;

use super::SourceError;
use crate::model::Snapshot;

/// Largest `latest.json` accepted.
pub const MAX_LATEST_BYTES: u64 = 64 * 1024;
/// Largest `manifest.json` accepted (a 1000-app manifest is about 300 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Largest `manifest.json.sig` accepted (a minisign signature is about 300 bytes).
pub const MAX_SIGNATURE_BYTES: u64 = 8 * 1024;
/// Default time limit for one whole request, body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Why a manifest revision was refused. Every case maps to the status reason
/// `VerificationFailed`; the running revision stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    /// A file's bytes do not hash to what the manifest says.
    #[error(
        "file {name:?} has sha256 {actual}, but the manifest says {expected}; republish the tree or check what changed the file"
    )]
    Digest {
        /// The file name.
        name: String,
        /// Digest from the manifest.
        expected: String,
        /// Digest of the downloaded bytes.
        actual: String,
    },
    /// A file's length differs from the manifest's `size`.
    #[error(
        "file {name:?} is {actual} bytes, but the manifest says {expected}; republish the tree"
    )]
    Size {
        /// The file name.
        name: String,
        /// Size from the manifest.
        expected: u64,
        /// Bytes received (at most one past the expected size is read).
        actual: u64,
    },
    /// A response or a declared file is over its limit.
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large, e.g. `file "web/big.env"` or `manifest.json`.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// More files than `limits.max_files`.
    #[error("the manifest lists {count} files, over the limit of {limit} (limits.max_files)")]
    TooManyFiles {
        /// Files listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A name that is absolute, climbs out of its app folder, or is otherwise unsafe.
    #[error("file name {name:?} refused: {problem}")]
    BadName {
        /// The name as listed.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// The same name listed twice.
    #[error("file name {name:?} is listed twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The `type` field does not match the name's extension.
    #[error("file {name:?} has type {declared:?}, but its name makes it {expected:?}")]
    TypeMismatch {
        /// The name.
        name: String,
        /// The listed type.
        declared: FileType,
        /// The type its extension implies.
        expected: FileType,
    },
    /// The `sha256` field is not 64 lower-case hex digits.
    #[error("file {name:?} has a malformed sha256 {value:?}; expected 64 lower-case hex digits")]
    BadDigestField {
        /// The name.
        name: String,
        /// The field as listed.
        value: String,
    },
    /// A quadlet file whose text is not UTF-8.
    #[error("quadlet file {name:?} is not valid UTF-8 text")]
    NonUtf8 {
        /// The name.
        name: String,
    },
    /// `latest.json` or `manifest.json` is not the expected JSON (including an unknown
    /// file `type`).
    #[error("{what} is malformed: {error}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// The parser's message, with line and column.
        error: String,
    },
    /// The manifest's `version` is not the one `latest.json` (or the pin) asked for.
    #[error("manifest.json says version {found}, expected {expected}")]
    VersionMismatch {
        /// The expected version.
        expected: u64,
        /// The manifest's version.
        found: u64,
    },
    /// `public_keys` is set and there is no signature next to the manifest.
    #[error(
        "no signature at {url} ({status}); public_keys is set, so every manifest must be signed (legerctl publish --sign)"
    )]
    MissingSignature {
        /// The signature's URL.
        url: String,
        /// What the server answered.
        status: String,
    },
    /// The signature does not verify against any configured key.
    #[error(
        "the signature does not verify against any of the {keys} configured public keys: {reason}"
    )]
    BadSignature {
        /// How many keys were tried.
        keys: usize,
        /// What minisign reported for the last key.
        reason: String,
    },
    /// A configured public key does not parse.
    #[error("public_keys[{index}] is not a minisign public key: {reason}")]
    BadKey {
        /// Index in `public_keys`.
        index: usize,
        /// What minisign reported.
        reason: String,
    },
    /// `latest.json` points at an older version than the one already applied.
    #[error(
        "latest.json points at version {to}, older than version {from} already in use; versions never go backwards unless desired.toml pins one (version = {to})"
    )]
    Downgrade {
        /// The version in use.
        from: u64,
        /// The version `latest.json` names.
        to: u64,
    },
    /// A redirect to another scheme, host or port.
    #[error(
        "redirect from {from} to {to} refused: it changes scheme or host; set allow_cross_origin_redirects = true to follow it"
    )]
    RedirectRefused {
        /// Where the request went.
        from: String,
        /// Where the server sent it.
        to: String,
    },
}

/// What one fetch cost on the wire, for metrics, benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchStats {
    /// HTTP requests sent.
    pub requests: u32,
    /// Of those, answered 304 Not Modified.
    pub not_modified: u32,
    /// Body bytes received.
    pub bytes: u64,
    /// Files downloaded (not found in the cache).
    pub files_downloaded: u32,
}

/// The result of [`ManifestSource::fetch`].
#[derive(Debug, Clone)]
pub struct ManifestFetch {
    /// The verified files, revision `v{N}@sha256:<digest of manifest.json>`.
    pub snapshot: Snapshot,
    /// What it cost.
    pub stats: FetchStats,
}

/// HTTP cache validators of a response, replayed as conditional headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Validators {
    fn from_headers(h: &HeaderMap) -> Self {
        Validators {
            etag: h.get(ETAG).cloned(),
            last_modified: h.get(LAST_MODIFIED).cloned(),
        }
    }
}

/// The last verified revision and the validators that lead to it.
#[derive(Debug, Clone)]
struct Current {
    version: u64,
    manifest_url: Url,
    /// Validators of `latest.json` (unused for a pin).
    latest: Validators,
    /// Validators of `manifest.json`.
    manifest: Validators,
    snapshot: Snapshot,
}

/// A manifest source with its blob cache and the last good revision.
#[derive(Debug)]
pub struct ManifestSource {
    spec: ManifestSourceSpec,
    base: Option<Url>,
    blob_dir: PathBuf,
    limits: Limits,
    timeout: Duration,
    current: Option<Current>,
}

/// A response body, or "not modified".
enum Body {
    /// The bytes, their validators, and the URL they came from after redirects.
    Fresh(Vec<u8>, Validators, Url),
    NotModified,
}

impl ManifestSource {
    /// A source for `spec`, caching blobs under `<state_dir>/manifest/`. Nothing is
    /// touched on disk or on the network until [`fetch`](Self::fetch).
    pub fn new(spec: ManifestSourceSpec, state_dir: &Path, limits: Limits) -> Self {
        let mut base = Url::parse(&spec.url).ok();
        if let Some(b) = &mut base
            && !b.path().ends_with('/')
        {
            let path = format!("{}/", b.path());
            b.set_path(&path);
        }
        let digest = hex::encode(Sha256::digest(spec.url.as_bytes()));
        let blob_dir = state_dir.join("manifest").join(&digest[..16]).join("blobs");
        ManifestSource {
            spec,
            base,
            blob_dir,
            limits,
            timeout: DEFAULT_TIMEOUT,
            current: None,
        }
    }

    /// Sets the time limit for each request (body included); 30 s by default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The folder of cached files, named by their sha256.
    pub fn blob_dir(&self) -> &Path {
        &self.blob_dir
    }

    /// Polls the tree and returns the verified files of the version in force.
    ///
    /// `applied` is the revision the host runs now; with `version = "latest"`, a
    /// `latest.json` that names an older version than it (or than the last verified
    /// one) is refused with [`ManifestProblem::Downgrade`].
    pub fn fetch(&mut self, applied: Option<&str>) -> Result<ManifestFetch, SourceError> {
        let base = self.base.clone().ok_or_else(|| SourceError::Unreachable {
            url: self.spec.url.clone(),
            reason: "the url does not parse".to_owned(),
        })?;
        let keys = self.keys()?;
        let http = Http::new(&self.spec, self.timeout)?;
        let mut stats = FetchStats::default();

        let (version, manifest_url, latest_validators) = match self.spec.version {
            ManifestVersion::Pinned(n) => {
                let url = join(&base, &[&version_dir(n), MANIFEST_FILE]);
                (n, url, Validators::default())
            }
            ManifestVersion::Latest => {
                let latest_url = join(&base, &[LATEST_FILE]);
                let cond = self.current.as_ref().map(|c| &c.latest);
                let (bytes, validators, final_url) =
                    match http.get(&latest_url, cond, MAX_LATEST_BYTES, LATEST_FILE, &mut stats)? {
                        Body::NotModified => {
                            let current = self.current.as_ref().expect("304 only when conditional");
                            return Ok(ManifestFetch {
                                snapshot: current.snapshot.clone(),
                                stats,
                            });
                        }
                        Body::Fresh(b, v, u) => (b, v, u),
                    };
                let latest: Latest = serde_json::from_slice(&bytes).map_err(|e| {
                    self.problem(ManifestProblem::Malformed {
                        what: LATEST_FILE,
                        error: e.to_string(),
                    })
                })?;
                let in_use = applied
                    .and_then(revision_version)
                    .into_iter()
                    .chain(self.current.as_ref().map(|c| c.version))
                    .max();
                if let Some(from) = in_use
                    && latest.version < from
                {
                    return Err(self.problem(ManifestProblem::Downgrade {
                        from,
                        to: latest.version,
                    }));
                }
                // Relative to where latest.json was really served from, after redirects.
                let url = final_url.join(&latest.manifest_url).map_err(|e| {
                    self.problem(ManifestProblem::Malformed {
                        what: LATEST_FILE,
                        error: format!("manifest_url {:?}: {e}", latest.manifest_url),
                    })
                })?;
                (latest.version, url, validators)
            }
        };

        // The manifest of the version in use may still be current; ask conditionally.
        let cond = self
            .current
            .as_ref()
            .filter(|c| c.manifest_url == manifest_url && c.version == version)
            .map(|c| &c.manifest);
        let (manifest_bytes, manifest_validators) = match http.get(
            &manifest_url,
            cond,
            MAX_MANIFEST_BYTES,
            MANIFEST_FILE,
            &mut stats,
        )? {
            Body::NotModified => {
                let current = self.current.as_mut().expect("304 only when conditional");
                current.latest = latest_validators;
                return Ok(ManifestFetch {
                    snapshot: current.snapshot.clone(),
                    stats,
                });
            }
            Body::Fresh(b, v, _) => (b, v),
        };

        if !keys.is_empty() {
            let mut sig_url = manifest_url.clone();
            sig_url.set_path(&format!("{}{SIGNATURE_SUFFIX}", manifest_url.path()));
            let sig = match http.get_opt(
                &sig_url,
                MAX_SIGNATURE_BYTES,
                "manifest.json.sig",
                &mut stats,
            )? {
                Ok(bytes) => bytes,
                Err(status) => {
                    return Err(self.problem(ManifestProblem::MissingSignature {
                        url: sig_url.to_string(),
                        status,
                    }));
                }
            };
            self.verify_signature(&keys, &manifest_bytes, &sig)?;
        }

        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            self.problem(ManifestProblem::Malformed {
                what: MANIFEST_FILE,
                error: e.to_string(),
            })
        })?;
        if manifest.version != version {
            return Err(self.problem(ManifestProblem::VersionMismatch {
                expected: version,
                found: manifest.version,
            }));
        }
        check_entries(&manifest, &self.limits).map_err(|p| self.problem(p))?;

        let mut files = BTreeMap::new();
        for entry in &manifest.files {
            let bytes = match self.cached(&entry.sha256) {
                Some(bytes) => bytes,
                None => {
                    let url = sibling(&manifest_url, &entry.name);
                    let bytes = match http.get(&url, None, entry.size, &entry.name, &mut stats) {
                        Ok(Body::Fresh(b, _, _)) => b,
                        Ok(Body::NotModified) => unreachable!("unconditional request"),
                        // The body ran past the declared size: report it as a size mismatch.
                        Err(SourceError::Verification {
                            problem: ManifestProblem::TooLarge { .. },
                            ..
                        }) => {
                            return Err(self.problem(ManifestProblem::Size {
                                name: entry.name.clone(),
                                expected: entry.size,
                                actual: entry.size + 1,
                            }));
                        }
                        Err(e) => return Err(e),
                    };
                    stats.files_downloaded += 1;
                    verify_file(entry, &bytes).map_err(|p| self.problem(p))?;
                    self.store_blob(&entry.sha256, &bytes)?;
                    bytes
                }
            };
            if entry.type_.is_quadlet() && std::str::from_utf8(&bytes).is_err() {
                return Err(self.problem(ManifestProblem::NonUtf8 {
                    name: entry.name.clone(),
                }));
            }
            files.insert(entry.name.clone(), Arc::<[u8]>::from(bytes));
        }

        let snapshot = Snapshot {
            revision: format!(
                "v{version}@sha256:{}",
                hex::encode(Sha256::digest(&manifest_bytes))
            ),
            files,
        };
        self.current = Some(Current {
            version,
            manifest_url,
            latest: latest_validators,
            manifest: manifest_validators,
            snapshot: snapshot.clone(),
        });
        Ok(ManifestFetch { snapshot, stats })
    }

    fn problem(&self, problem: ManifestProblem) -> SourceError {
        SourceError::Verification {
            url: self.spec.url.clone(),
            problem,
        }
    }

    fn keys(&self) -> Result<Vec<minisign_verify::PublicKey>, SourceError> {
        self.spec
            .public_keys
            .iter()
            .enumerate()
            .map(|(index, k)| {
                minisign_verify::PublicKey::from_base64(k.trim()).map_err(|e| {
                    self.problem(ManifestProblem::BadKey {
                        index,
                        reason: e.to_string(),
                    })
                })
            })
            .collect()
    }

    fn verify_signature(
        &self,
        keys: &[minisign_verify::PublicKey],
        manifest: &[u8],
        sig: &[u8],
    ) -> Result<(), SourceError> {
        let bad = |reason: String| {
            self.problem(ManifestProblem::BadSignature {
                keys: keys.len(),
                reason,
            })
        };
        let text = std::str::from_utf8(sig).map_err(|_| bad("the signature is not text".into()))?;
        let sig = minisign_verify::Signature::decode(text).map_err(|e| bad(e.to_string()))?;
        let mut last = String::new();
        for key in keys {
            match key.verify(manifest, &sig, false) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(bad(last))
    }

    /// A cached blob, re-hashed so a damaged cache file is fetched again, not trusted.
    fn cached(&self, sha256: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.blob_dir.join(sha256)).ok()?;
        (hex::encode(Sha256::digest(&bytes)) == sha256).then_some(bytes)
    }

    fn store_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), SourceError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| SourceError::Io { what, path, source }
        };
        std::fs::create_dir_all(&self.blob_dir)
            .map_err(io("creating manifest cache", &self.blob_dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.blob_dir)
            .map_err(io("creating a file in", &self.blob_dir))?;
        let dest = self.blob_dir.join(sha256);
        tmp.write_all(bytes).map_err(io("writing", &dest))?;
        tmp.persist(&dest).map_err(|e| SourceError::Io {
            what: "writing",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// The `N` of a `v{N}@sha256:...` revision; `None` for other sources' revisions.
pub fn revision_version(revision: &str) -> Option<u64> {
    revision.strip_prefix('v')?.split_once('@')?.0.parse().ok()
}

/// Checks every entry of a manifest before any file is downloaded: the count, each
/// name, duplicates, declared sizes, digest fields and types.
pub fn check_entries(manifest: &Manifest, limits: &Limits) -> Result<(), ManifestProblem> {
    if manifest.files.len() > limits.max_files {
        return Err(ManifestProblem::TooManyFiles {
            count: manifest.files.len(),
            limit: limits.max_files,
        });
    }
    let mut seen = BTreeSet::new();
    for f in &manifest.files {
        validate_file_name(&f.name).map_err(|problem| ManifestProblem::BadName {
            name: f.name.clone(),
            problem,
        })?;
        if !seen.insert(f.name.as_str()) {
            return Err(ManifestProblem::Duplicate {
                name: f.name.clone(),
            });
        }
        if f.size > limits.max_file_size {
            return Err(ManifestProblem::TooLarge {
                what: format!("file {:?} ({} bytes)", f.name, f.size),
                limit: limits.max_file_size,
            });
        }
        if f.sha256.len() != 64
            || !f
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ManifestProblem::BadDigestField {
                name: f.name.clone(),
                value: f.sha256.clone(),
            });
        }
        let expected = FileType::for_name(&f.name);
        if f.type_ != expected {
            return Err(ManifestProblem::TypeMismatch {
                name: f.name.clone(),
                declared: f.type_,
                expected,
            });
        }
    }
    Ok(())
}

/// Checks one downloaded file against its entry: size first, then sha256.
pub fn verify_file(entry: &ManifestFile, bytes: &[u8]) -> Result<(), ManifestProblem> {
    if bytes.len() as u64 != entry.size {
        return Err(ManifestProblem::Size {
            name: entry.name.clone(),
            expected: entry.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != entry.sha256 {
        return Err(ManifestProblem::Digest {
            name: entry.name.clone(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// The manifest describing `files` (name to bytes), as `legerctl publish` writes it:
/// sorted by name, types from the extension.
pub fn manifest_for(
    version: u64,
    generated_at: String,
    files: &BTreeMap<String, Vec<u8>>,
) -> Manifest {
    Manifest {
        version,
        generated_at,
        files: files
            .iter()
            .map(|(name, bytes)| ManifestFile {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(bytes)),
                type_: FileType::for_name(name),
            })
            .collect(),
        metadata: serde_json::Map::new(),
    }
}

/// `base` with `parts` appended as path segments (each percent-encoded).
fn join(base: &Url, parts: &[&str]) -> Url {
    let mut url = base.clone();
    {
        let mut segs = url.path_segments_mut().expect("http urls have a path");
        segs.pop_if_empty();
        for p in parts {
            segs.extend(p.split('/'));
        }
    }
    url
}

/// The URL of `name` next to the manifest at `manifest_url`.
fn sibling(manifest_url: &Url, name: &str) -> Url {
    let mut url = manifest_url.clone();
    {
        let mut segs = url.path_segments_mut().expect("http urls have a path");
        segs.pop();
        segs.extend(name.split('/'));
    }
    url
}

/// The blocking client of one fetch, with the bearer token and redirect policy.
struct Http {
    client: reqwest::blocking::Client,
    token: Option<HeaderValue>,
    display_url: String,
}

/// The error a refused redirect carries out of reqwest's redirect policy.
#[derive(Debug, thiserror::Error)]
#[error("cross-origin redirect from {from} to {to}")]
struct CrossOrigin {
    from: String,
    to: String,
}

impl Http {
    fn new(spec: &ManifestSourceSpec, timeout: Duration) -> Result<Self, SourceError> {
        let allow = spec.allow_cross_origin_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let prev = attempt.previous().last().cloned();
            match prev {
                Some(prev)
                    if !allow
                        && (prev.scheme() != attempt.url().scheme()
                            || prev.host_str() != attempt.url().host_str()
                            || prev.port_or_known_default()
                                != attempt.url().port_or_known_default()) =>
                {
                    let to = attempt.url().to_string();
                    attempt.error(CrossOrigin {
                        from: prev.to_string(),
                        to,
                    })
                }
                _ => attempt.follow(),
            }
        });
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(policy)
            .user_agent(concat!("legerd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Unreachable {
                url: spec.url.clone(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        let token =
            match &spec.token_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
                        what: "reading token_file",
                        path: path.clone(),
                        source,
                    })?;
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", text.trim()))
                        .map_err(|_| SourceError::Io {
                            what: "reading token_file",
                            path: path.clone(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "the token holds characters not allowed in an HTTP header",
                            ),
                        })?;
                    value.set_sensitive(true);
                    Some(value)
                }
                None => None,
            };
        Ok(Http {
            client,
            token,
            display_url: spec.url.clone(),
        })
    }

    fn send(
        &self,
        url: &Url,
        cond: Option<&Validators>,
        stats: &mut FetchStats,
    ) -> Result<reqwest::blocking::Response, SourceError> {
        let mut req = self.client.get(url.clone());
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, t.clone());
        }
        if let Some(v) = cond {
            if let Some(e) = &v.etag {
                req = req.header(IF_NONE_MATCH, e.clone());
            }
            if let Some(m) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, m.clone());
            }
        }
        stats.requests += 1;
        req.send().map_err(|e| self.transport_error(url, &e))
    }

    /// GETs `url`; a 304 (only possible with `cond`) is [`Body::NotModified`], any other
    /// status but 200 is an error.
    fn get(
        &self,
        url: &Url,
        cond: Option<&Validators>,
        limit: u64,
        what: &str,
        stats: &mut FetchStats,
    ) -> Result<Body, SourceError> {
        let resp = self.send(url, cond, stats)?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED && cond.is_some() {
            stats.not_modified += 1;
            return Ok(Body::NotModified);
        }
        if status != StatusCode::OK {
            return Err(self.status_error(url, status));
        }
        let validators = Validators::from_headers(resp.headers());
        let final_url = resp.url().clone();
        let bytes = self.read_limited(url, resp, limit, what, stats)?;
        Ok(Body::Fresh(bytes, validators, final_url))
    }

    /// GETs an optional document: `Err(status text)` for a 404 or 410.
    fn get_opt(
        &self,
        url: &Url,
        limit: u64,
        what: &str,
        stats: &mut FetchStats,
    ) -> Result<Result<Vec<u8>, String>, SourceError> {
        let resp = self.send(url, None, stats)?;
        let status = resp.status();
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            return Ok(Err(status.to_string()));
        }
        if status != StatusCode::OK {
            return Err(self.status_error(url, status));
        }
        self.read_limited(url, resp, limit, what, stats).map(Ok)
    }

    fn read_limited(
        &self,
        url: &Url,
        resp: reqwest::blocking::Response,
        limit: u64,
        what: &str,
        stats: &mut FetchStats,
    ) -> Result<Vec<u8>, SourceError> {
        let too_large = || SourceError::Verification {
            url: self.display_url.clone(),
            problem: ManifestProblem::TooLarge {
                what: format!("{what} ({url})"),
                limit,
            },
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        resp.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SourceError::Unreachable {
                url: self.display_url.clone(),
                reason: format!("reading {url}: {}", error_chain(&e)),
            })?;
        stats.bytes += bytes.len() as u64;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(bytes)
    }

    fn status_error(&self, url: &Url, status: StatusCode) -> SourceError {
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "; check the token in token_file",
            StatusCode::NOT_FOUND => "; check the url and that the tree is published there",
            _ => "",
        };
        SourceError::Unreachable {
            url: self.display_url.clone(),
            reason: format!("{url} answered {status}{hint}"),
        }
    }

    fn transport_error(&self, url: &Url, e: &reqwest::Error) -> SourceError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(c) = s.downcast_ref::<CrossOrigin>() {
                return SourceError::Verification {
                    url: self.display_url.clone(),
                    problem: ManifestProblem::RedirectRefused {
                        from: c.from.clone(),
                        to: c.to.clone(),
                    },
                };
            }
            source = s.source();
        }
        let reason = if e.is_timeout() {
            format!("{url} did not answer in time ({})", error_chain(e))
        } else {
            format!("{url}: {}", error_chain(e))
        };
        SourceError::Unreachable {
            url: self.display_url.clone(),
            reason,
        }
    }
}

/// Every message of an error chain, outermost first, without repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_file_size: 100,
            max_files: 3,
        }
    }

    fn entry(name: &str, bytes: &[u8]) -> ManifestFile {
        let mut files = BTreeMap::new();
        files.insert(name.to_owned(), bytes.to_vec());
        manifest_for(1, String::new(), &files).files.remove(0)
    }

    fn manifest(files: Vec<ManifestFile>) -> Manifest {
        Manifest {
            version: 1,
            generated_at: String::new(),
            files,
            metadata: serde_json::Map::new(),
        }
    }

    #[test]
    fn short_revision_keeps_the_manifest_version() {
        let rev = format!("v12@sha256:{}", "ab".repeat(32));
        assert_eq!(crate::model::Revision(&rev).short(), "v12@abababababab");
        assert_eq!(
            crate::model::Revision("sha256:0123456789abcdef").short(),
            "0123456789ab"
        );
    }

    #[test]
    fn revision_version_reads_manifest_revisions_only() {
        assert_eq!(revision_version("v12@sha256:ab"), Some(12));
        assert_eq!(revision_version("0123abcd"), None);
        assert_eq!(revision_version("sha256:ab"), None);
    }

    #[test]
    fn check_entries_refuses_each_bad_entry() {
        let ok = entry("web/web.container", b"[Container]\n");
        assert_eq!(
            check_entries(&manifest(vec![ok.clone()]), &limits()),
            Ok(())
        );
        let dup = manifest(vec![ok.clone(), ok.clone()]);
        assert!(matches!(
            check_entries(&dup, &limits()),
            Err(ManifestProblem::Duplicate { .. })
        ));
        let many = manifest(vec![ok.clone(); 4]);
        assert!(matches!(
            check_entries(&many, &limits()),
            Err(ManifestProblem::TooManyFiles { count: 4, limit: 3 })
        ));
        let mut big = ok.clone();
        big.size = 101;
        assert!(matches!(
            check_entries(&manifest(vec![big]), &limits()),
            Err(ManifestProblem::TooLarge { .. })
        ));
        let mut esc = ok.clone();
        esc.name = "web/../../etc/x.container".into();
        assert!(matches!(
            check_entries(&manifest(vec![esc]), &limits()),
            Err(ManifestProblem::BadName {
                problem: NameProblem::DotDot,
                ..
            })
        ));
        let mut smuggled = ok.clone();
        smuggled.type_ = FileType::Other;
        let e = check_entries(&manifest(vec![smuggled]), &limits()).unwrap_err();
        assert!(e.to_string().contains("makes it Container"), "{e}");
        let mut digest = ok;
        digest.sha256 = "ABC".into();
        assert!(matches!(
            check_entries(&manifest(vec![digest]), &limits()),
            Err(ManifestProblem::BadDigestField { .. })
        ));
    }

    #[test]
    fn verify_file_names_file_and_both_digests() {
        let e = entry("web/app.env", b"A=1\n");
        assert_eq!(verify_file(&e, b"A=1\n"), Ok(()));
        let err = verify_file(&e, b"A=2\n").unwrap_err().to_string();
        assert!(
            err.contains("web/app.env") && err.contains(&e.sha256),
            "{err}"
        );
        assert!(
            err.contains(&hex::encode(Sha256::digest(b"A=2\n"))),
            "{err}"
        );
        let err = verify_file(&e, b"A=12\n").unwrap_err();
        assert!(matches!(
            err,
            ManifestProblem::Size {
                expected: 4,
                actual: 5,
                ..
            }
        ));
    }

    #[test]
    fn sibling_and_join_encode_segments() {
        let m = Url::parse("http://h/base/v3/manifest.json").unwrap();
        assert_eq!(
            sibling(&m, "web/a b.env").as_str(),
            "http://h/base/v3/web/a%20b.env"
        );
        assert_eq!(
            sibling(&m, "web/x?y").as_str(),
            "http://h/base/v3/web/x%3Fy"
        );
        let b = Url::parse("http://h/base/").unwrap();
        assert_eq!(
            join(&b, &["v3", "manifest.json"]).as_str(),
            "http://h/base/v3/manifest.json"
        );
        assert_eq!(
            join(&b, &[LATEST_FILE]).as_str(),
            "http://h/base/latest.json"
        );
    }
}
