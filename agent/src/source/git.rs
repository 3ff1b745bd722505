//! A git repository as the source of desired state, fetched with gix into a bare
//! cache under the state dir.
//!
//! Every poll asks the remote for its refs (one small request). Only when the wanted
//! ref names an object the cache does not have is a pack requested, so an idle poll
//! costs one ref advertisement, and a pinned commit that is already cached costs
//! nothing at all.
//!
//! Local repositories (`file://` URLs and absolute paths) are still copied into the
//! cache, so it keeps serving the last good revision when the local repository
//! disappears. Their ref is read with `gix::open`: when the cache already has its
//! object there is nothing to fetch (spawning `upload-pack` for a ref advertisement
//! was most of an idle poll's cost), and a new commit on top of cached history has
//! its few new objects copied in process. A first fetch, an unrelated history or a
//! large one goes through the same fetch as remote ones (gix runs `git
//! upload-pack`, which needs a `git` binary on the host). The force-push check runs
//! on the cache either way.
//!
//! Reading a new commit's tree shares every blob the last tree read already held, so
//! a one-app change reads that app's blobs only.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::remote::Direction;
use gix::{ObjectId, Repository};
use leger_api_types::desired::{GitSourceSpec, is_full_commit_id};
use leger_config::Limits;
use sha2::{Digest, Sha256};

use super::SourceError;
use super::tree::{TreeBuilder, TreeProblem, checked_path};
use crate::model::Snapshot;

/// Branches land in remote-tracking refs so a branch and a tag of the same name never
/// collide in the cache; tags are mirrored as they are.
const REFSPECS: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];

/// How many remote ref names a "ref not found" error lists.
const LISTED_REFS: usize = 20;

/// The refspecs of a poll for `reference`: its branch and its tag only. Why: with
/// protocol v2 the remote lists only refs under these prefixes, so an idle poll does
/// not grow with every other branch and tag of the repository (the fleet simulation
/// measured about 62 bytes per tag per poll, 32 kB for 500 tags).
fn narrow_refspecs(reference: &str) -> [String; 2] {
    [
        format!("+refs/heads/{reference}:refs/remotes/origin/{reference}"),
        format!("+refs/tags/{reference}:refs/tags/{reference}"),
    ]
}

/// A git source with its local cache.
#[derive(Debug)]
pub struct GitSource {
    /// What to fetch.
    spec: GitSourceSpec,
    /// The bare cache repository, `<state_dir>/git/<hash of url>`.
    cache_dir: PathBuf,
    /// Size and count limits from the agent's config.
    limits: Limits,
    /// The URL with credentials replaced, for every message.
    display_url: String,
    /// The last snapshot read; its files are shared (`Arc`), so keeping it is cheap.
    last_snapshot: Option<Snapshot>,
    /// The limit on the `ssh` child of an ssh source (`reconcile.command_timeout`).
    command_timeout: std::time::Duration,
    /// How long the `git upload-pack` of a local repository may run before it is
    /// killed ([`super::upload_pack::Deadline`]): legerd gives the pass budget and a
    /// little more. `None` (the default, for tools and tests that may fetch several
    /// sources at once) leaves it unbounded: the deadline kills by process, and only
    /// legerd knows that one fetch runs at a time.
    upload_pack_timeout: Option<std::time::Duration>,
    /// How long an HTTP(S) remote may take to answer, and to send each next piece of a
    /// body, before the fetch fails (gix's own connect limit is 20 s).
    http_timeout: std::time::Duration,
    /// The blobs of the last tree read, by id, sharing the snapshot's bytes: a new
    /// commit reads only the blobs it changed (a blob id names its bytes for good).
    last_blobs: HashMap<ObjectId, Arc<[u8]>>,
}

/// How long an HTTP(S) git remote may stay silent: for an answer, and between the
/// pieces of a body. A pack download may take long; a stalled one does not.
const HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a fetch did on the wire, for metrics and for tests that check idle polls stay
/// cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchStats {
    /// The remote was asked for its refs.
    pub contacted_remote: bool,
    /// A pack was downloaded (new objects arrived).
    pub received_pack: bool,
}

/// The result of [`GitSource::fetch`].
#[derive(Debug, Clone)]
pub struct GitFetch {
    /// The files at the resolved commit.
    pub snapshot: Snapshot,
    /// What it cost.
    pub stats: FetchStats,
}

/// How the configured ref matched on the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Branch,
    Tag,
    Commit,
}

impl GitSource {
    /// A source for `spec`, caching under `<state_dir>/git/`. Nothing is touched on
    /// disk or on the network until [`fetch`](Self::fetch).
    pub fn new(spec: GitSourceSpec, state_dir: &Path, limits: Limits) -> Self {
        let digest = hex::encode(Sha256::digest(spec.url.as_bytes()));
        let cache_dir = state_dir.join("git").join(&digest[..16]);
        let display_url = redact_url(&spec.url);
        GitSource {
            spec,
            cache_dir,
            limits,
            display_url,
            last_snapshot: None,
            command_timeout: leger_config::DEFAULT_COMMAND_TIMEOUT,
            upload_pack_timeout: None,
            http_timeout: HTTP_TIMEOUT,
            last_blobs: HashMap::new(),
        }
    }

    /// Sets the limit on the `ssh` child of an ssh source; it is killed when it passes.
    pub fn with_command_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets how long an HTTP(S) remote may stay silent (default 30 s).
    pub fn with_http_timeout(mut self, limit: std::time::Duration) -> Self {
        self.http_timeout = limit;
        self
    }

    /// Bounds the `git upload-pack` gix runs for a local repository (legerd passes
    /// `reconcile.pass_timeout` plus 10 s). Only for a process that runs one fetch at a
    /// time: a new fetch kills an upload-pack still running from an earlier one. Remote
    /// fetches are bounded by gix's 20 s connect limit and
    /// [`GitSource::with_http_timeout`].
    pub fn with_upload_pack_timeout(mut self, limit: std::time::Duration) -> Self {
        self.upload_pack_timeout = Some(limit);
        self
    }

    /// The bare cache repository's folder.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Fetches the configured ref and reads the tree at it.
    ///
    /// `applied` is the commit the host runs now. When the ref is a branch and its new
    /// commit does not descend from `applied`, the fetch fails with
    /// [`SourceError::HistoryRewritten`] unless `allow_rewrite` is set. An `applied`
    /// that is not a commit id (a dir source's `sha256:` revision) is ignored; a
    /// commit id the cache has never seen counts as rewritten, since nothing proves
    /// otherwise.
    pub fn fetch(&mut self, applied: Option<&str>) -> Result<GitFetch, SourceError> {
        let repo = self.open_cache()?;
        let mut stats = FetchStats::default();

        let (commit, kind) = if self.spec.is_pinned_commit() {
            let id = ObjectId::from_hex(self.spec.reference.as_bytes()).map_err(|_| {
                SourceError::RefNotFound {
                    url: self.display_url.clone(),
                    reference: self.spec.reference.clone(),
                    available: Vec::new(),
                }
            })?;
            if !has_commit(&repo, id) {
                let listed = self.fetch_remote(&repo, &REFSPECS, None, &mut stats)?;
                if !has_commit(&repo, id) {
                    return Err(SourceError::RefNotFound {
                        url: self.display_url.clone(),
                        reference: self.spec.reference.clone(),
                        available: listed,
                    });
                }
            }
            (id, RefKind::Commit)
        } else {
            let (target, kind) = match self.local_ref_in_cache(&repo) {
                Some((id, kind, copied)) => {
                    stats.received_pack |= copied;
                    (id, kind)
                }
                None => {
                    let mut found = None;
                    let narrow = narrow_refspecs(&self.spec.reference);
                    let mut listed =
                        self.fetch_remote(&repo, &narrow, Some(&mut found), &mut stats)?;
                    if found.is_none() {
                        // Only now list every branch and tag: for the "not found"
                        // message, and in case the remote filtered by prefix differently.
                        listed =
                            self.fetch_remote(&repo, &REFSPECS, Some(&mut found), &mut stats)?;
                    }
                    found.ok_or_else(|| SourceError::RefNotFound {
                        url: self.display_url.clone(),
                        reference: self.spec.reference.clone(),
                        available: listed,
                    })?
                }
            };
            (self.peel_to_commit(&repo, target)?, kind)
        };

        if kind == RefKind::Branch
            && !self.spec.allow_rewrite
            && let Some(applied) = applied.filter(|a| is_full_commit_id(a))
        {
            self.check_descends(&repo, applied, commit)?;
        }

        let revision = commit.to_hex().to_string();
        if let Some(last) = self
            .last_snapshot
            .as_ref()
            .filter(|s| s.revision == revision)
        {
            // An idle poll: the commit is the one read last time, and commits are
            // immutable, so skip re-reading thousands of blobs.
            return Ok(GitFetch {
                snapshot: last.clone(),
                stats,
            });
        }
        let files = self.read_tree(&repo, commit)?;
        let snapshot = Snapshot { revision, files };
        self.last_snapshot = Some(snapshot.clone());
        Ok(GitFetch { snapshot, stats })
    }

    fn cache_error(&self, reason: impl std::fmt::Display) -> SourceError {
        SourceError::Cache {
            url: self.display_url.clone(),
            path: self.cache_dir.clone(),
            reason: redact_text(&reason.to_string(), &self.spec.url),
        }
    }

    /// Opens the bare cache, creating it (and its parents) on first use.
    ///
    /// The cache is opened with repository-local config only, so a user's
    /// `~/.gitconfig` (url rewrites, credential helpers that prompt) cannot change
    /// what a daemon fetches; proxy variables from the environment still apply.
    ///
    /// It is opened afresh on every fetch rather than kept: without gix's `parallel`
    /// feature a `Repository` is not `Send`, and the source must move into
    /// `spawn_blocking`. Opening a bare repository costs a config read.
    fn open_cache(&self) -> Result<Repository, SourceError> {
        if !self.cache_dir.join("HEAD").exists() {
            std::fs::create_dir_all(&self.cache_dir).map_err(|source| SourceError::Io {
                what: "creating git cache",
                path: self.cache_dir.clone(),
                source,
            })?;
            gix::init_bare(&self.cache_dir).map_err(|e| self.cache_error(chain(&e)))?;
        }
        let mut permissions = gix::open::Permissions::isolated();
        permissions.env.http_transport = gix::sec::Permission::Allow;
        let options = gix::open::Options::default().permissions(permissions);
        gix::open_opts(&self.cache_dir, options).map_err(|e| self.cache_error(chain(&e)))
    }

    /// For a local repository: what the configured ref names now, read straight from
    /// its refs, and whether its new objects were copied into the cache. An idle poll
    /// of a local source then spawns no `git upload-pack` (about 6 ms of a poll's
    /// cost, and most of it), and neither does a new commit on top of cached history
    /// ([`copy_new_objects`]: a one-app change at 100 apps spent most of legerd's
    /// 250 ms in `upload-pack`). `None` whenever it cannot tell (a remote URL, a
    /// repository that does not open, a missing or symbolic ref, new history the
    /// cache has no ancestor of): the real fetch runs, with its negotiation and
    /// messages.
    fn local_ref_in_cache(&self, cache: &Repository) -> Option<(ObjectId, RefKind, bool)> {
        let path = local_path(&self.spec.url)?;
        let options = gix::open::Options::default().permissions(gix::open::Permissions::isolated());
        let local = gix::open_opts(path, options).ok()?;
        let wanted = &self.spec.reference;
        let lookup = |full: String| -> Option<ObjectId> {
            let reference = local.try_find_reference(full.as_str()).ok()??;
            reference.target().try_id().map(ToOwned::to_owned)
        };
        let (id, kind) = lookup(format!("refs/heads/{wanted}"))
            .map(|id| (id, RefKind::Branch))
            .or_else(|| lookup(format!("refs/tags/{wanted}")).map(|id| (id, RefKind::Tag)))?;
        if cache.has_object(id) {
            return Some((id, kind, false));
        }
        copy_new_objects(&local, cache, id).then_some((id, kind, true))
    }

    /// The HTTP transport's options from the repository's config, with reqwest's
    /// client bounded by [`GitSource::http_timeout`] for each answer and each read of
    /// a body, written down rather than left to reqwest's default. `None` for a URL
    /// that is not HTTP(S) or options gix does not give.
    fn http_options(&self, repo: &Repository) -> Option<Box<dyn std::any::Any>> {
        use gix::protocol::transport::client::blocking_io::http;
        if !(self.spec.url.starts_with("http://") || self.spec.url.starts_with("https://")) {
            return None;
        }
        let options = repo
            .transport_options(self.spec.url.as_str(), None)
            .ok()??;
        let mut options = options.downcast::<http::Options>().ok()?;
        let limit = self.http_timeout;
        let configure: Box<http::reqwest::ConfigureClientFn> =
            Box::new(move |client| Ok(client.timeout(limit)));
        let backend = http::reqwest::Options {
            configure_client: Some(configure),
            ..Default::default()
        };
        options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
        Some(options)
    }

    /// Lists the remote's refs and fetches a pack when needed.
    ///
    /// The remote is asked for the refs of `refspecs` ([`narrow_refspecs`] for a poll,
    /// [`REFSPECS`] for everything). With `found`, the configured ref is looked up in
    /// the advertisement (branch first, then tag) and a pack is requested only when
    /// its object is missing locally. Without it (a pinned commit that is not cached
    /// yet), every ref of `refspecs` is fetched. Returns some advertised names, for a
    /// "not found" message.
    fn fetch_remote<S: AsRef<str>>(
        &self,
        repo: &Repository,
        refspecs: &[S],
        found: Option<&mut Option<(ObjectId, RefKind)>>,
        stats: &mut FetchStats,
    ) -> Result<Vec<String>, SourceError> {
        let deadline = local_path(&self.spec.url)
            .and(self.upload_pack_timeout)
            .map(super::upload_pack::Deadline::arm);
        let result = self.fetch_remote_unbounded(repo, refspecs, found, stats);
        match deadline.and_then(|d| d.explain(&self.display_url)) {
            Some(reason) if result.is_err() => Err(SourceError::Unreachable {
                url: self.display_url.clone(),
                reason,
            }),
            _ => result,
        }
    }

    /// [`GitSource::fetch_remote`] without the local upload-pack's time limit: over
    /// `ssh` for an ssh url, else over gix's own transport.
    fn fetch_remote_unbounded<S: AsRef<str>>(
        &self,
        repo: &Repository,
        refspecs: &[S],
        found: Option<&mut Option<(ObjectId, RefKind)>>,
        stats: &mut FetchStats,
    ) -> Result<Vec<String>, SourceError> {
        if !leger_api_types::ssh_url::is_ssh_url(&self.spec.url) {
            return self.fetch_remote_over(repo, refspecs, found, stats, None);
        }
        let ssh_error = |problem: String| SourceError::Ssh {
            url: self.display_url.clone(),
            problem: redact_text(&problem, &self.spec.url),
        };
        // desired.toml refuses an ssh url without both files; a spec built in code gets
        // the same answer rather than gix's own ssh, which no limit bounds.
        let (Some(key), Some(known_hosts)) = (&self.spec.ssh_key_file, &self.spec.known_hosts_file)
        else {
            return Err(ssh_error(
                "an ssh url needs both `ssh_key_file` and `known_hosts_file`".to_owned(),
            ));
        };
        let files = super::ssh::SshFiles { key, known_hosts };
        let url = gix::url::parse(self.spec.url.as_str())
            .map_err(|e| ssh_error(format!("invalid url: {e}")))?;
        let runner = crate::command::Runner::new(self.command_timeout);
        let ssh = super::ssh::connect(&url, files, runner).map_err(ssh_error)?;
        let result = self.fetch_remote_over(repo, refspecs, found, stats, Some(ssh.transport));
        // Every gix object holding the pipes is gone: ssh sees its stdin close and exits.
        let ended = ssh.conversation.finish();
        match result {
            Err(e @ (SourceError::Unreachable { .. } | SourceError::Auth { .. })) => {
                if let Some(problem) = super::ssh::explain(&ended, &url, files) {
                    return Err(ssh_error(problem));
                }
                Err(match (e, super::ssh::last_words(&ended)) {
                    (SourceError::Unreachable { url, reason }, Some(said)) => {
                        SourceError::Unreachable {
                            url,
                            reason: format!(
                                "{reason}; ssh said: {}",
                                redact_text(&said, &self.spec.url)
                            ),
                        }
                    }
                    (e, _) => e,
                })
            }
            other => other,
        }
    }

    /// [`fetch_remote`](Self::fetch_remote) over gix's own transport for the URL, or
    /// over `ssh` when given (a running ssh child).
    fn fetch_remote_over<S: AsRef<str>>(
        &self,
        repo: &Repository,
        refspecs: &[S],
        found: Option<&mut Option<(ObjectId, RefKind)>>,
        stats: &mut FetchStats,
        ssh: Option<
            gix::protocol::transport::client::git::blocking_io::Connection<
                std::process::ChildStdout,
                std::process::ChildStdin,
            >,
        >,
    ) -> Result<Vec<String>, SourceError> {
        let remote = repo
            .remote_at(self.spec.url.as_str())
            .and_then(|r| {
                r.with_refspecs(
                    refspecs.iter().map(|s| s.as_ref().as_bytes()),
                    Direction::Fetch,
                )
            })
            .map_err(|e| self.unreachable(&e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let credentials = match &self.spec.credentials_file {
            Some(path) => Some(read_credentials(path).map_err(|reason| SourceError::Auth {
                url: self.display_url.clone(),
                reason,
            })?),
            None => None,
        };
        let mut connection = match ssh {
            Some(transport) => remote.to_connection_with_transport(Box::new(transport)
                as Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>),
            None => remote
                .connect(Direction::Fetch)
                .map_err(|e| self.remote_error(&e))?,
        }
        .with_credentials(move |action| {
            Ok(match action {
                gix::credentials::helper::Action::Get(ctx) => {
                    credentials
                        .clone()
                        .map(|identity| gix::credentials::protocol::Outcome {
                            identity,
                            next: ctx.into(),
                        })
                }
                _ => None,
            })
        });
        if let Some(options) = self.http_options(repo) {
            connection = connection.with_transport_options(options);
        }
        stats.contacted_remote = true;
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.remote_error(&e))?;

        let advertised: Vec<(String, ObjectId)> = prepare
            .ref_map()
            .remote_refs
            .iter()
            .filter_map(|r| {
                let (name, target, _peeled) = r.unpack();
                Some((name.to_str().ok()?.to_owned(), target?.to_owned()))
            })
            .collect();
        let listed = advertised
            .iter()
            .filter_map(|(n, _)| {
                n.strip_prefix("refs/heads/")
                    .or_else(|| n.strip_prefix("refs/tags/"))
            })
            .take(LISTED_REFS)
            .map(str::to_owned)
            .collect();

        let need_pack = match found {
            Some(found) => {
                let wanted = &self.spec.reference;
                let lookup = |full: String| {
                    advertised
                        .iter()
                        .find(|(n, _)| *n == full)
                        .map(|(_, id)| *id)
                };
                *found = lookup(format!("refs/heads/{wanted}"))
                    .map(|id| (id, RefKind::Branch))
                    .or_else(|| lookup(format!("refs/tags/{wanted}")).map(|id| (id, RefKind::Tag)));
                match found {
                    Some((id, _)) => !repo.has_object(*id),
                    None => false,
                }
            }
            None => true,
        };
        if need_pack {
            let outcome = prepare
                .receive(gix::progress::Discard, &AtomicBool::new(false))
                .map_err(|e| self.remote_error(&e))?;
            stats.received_pack =
                matches!(outcome.status, gix::remote::fetch::Status::Change { .. });
        }
        Ok(listed)
    }

    fn unreachable(&self, e: &gix::Error) -> SourceError {
        SourceError::Unreachable {
            url: self.display_url.clone(),
            reason: redact_text(&chain(e), &self.spec.url),
        }
    }

    /// Sorts a transport error: a refusal of credentials (by the remote, or by gix,
    /// which never sends them over plain http) is [`SourceError::Auth`], anything
    /// else means the remote is unavailable for now.
    fn remote_error(&self, e: &gix::Error) -> SourceError {
        let refused_locally = matches!(
            e.downcast_any_ref::<gix::protocol::transport::client::Error>(),
            Some(gix::protocol::transport::client::Error::AuthenticationRefused(_))
        );
        if refused_locally || e.is_unauthenticated() || e.is_permission_denied() {
            let reason = if !refused_locally && self.spec.credentials_file.is_none() {
                // gix's own text blames a credential helper, which a daemon never runs.
                "the server requires credentials; put them in a root-only file and name it with `credentials_file` in [source]".to_owned()
            } else {
                redact_text(&chain(e), &self.spec.url)
            };
            SourceError::Auth {
                url: self.display_url.clone(),
                reason,
            }
        } else {
            self.unreachable(e)
        }
    }

    fn peel_to_commit(&self, repo: &Repository, target: ObjectId) -> Result<ObjectId, SourceError> {
        let object = repo
            .find_object(target)
            .map_err(|e| self.cache_error(chain(&e)))?;
        let commit = object.peel_to_commit().map_err(|e| {
            self.cache_error(format!(
                "ref {:?} points at {target}, which is not a commit: {}",
                self.spec.reference,
                chain(&e)
            ))
        })?;
        Ok(commit.id)
    }

    /// Refuses `new` unless it is `applied` or one of its descendants.
    fn check_descends(
        &self,
        repo: &Repository,
        applied: &str,
        new: ObjectId,
    ) -> Result<(), SourceError> {
        let rewritten = || SourceError::HistoryRewritten {
            reference: self.spec.reference.clone(),
            from: applied.to_owned(),
            to: new.to_hex().to_string(),
        };
        let Ok(applied_id) = ObjectId::from_hex(applied.as_bytes()) else {
            return Err(rewritten());
        };
        if applied_id == new {
            return Ok(());
        }
        if !has_commit(repo, applied_id) {
            return Err(rewritten());
        }
        let walk = repo
            .rev_walk([new])
            .all()
            .map_err(|e| self.cache_error(chain(&e)))?;
        for info in walk {
            let info = info.map_err(|e| self.cache_error(chain(&e)))?;
            if info.id == applied_id {
                return Ok(());
            }
        }
        Err(rewritten())
    }

    /// Reads every file under the configured sub-folder at `commit`. Blobs that the
    /// last tree read already held are shared from it, not decompressed again, so a
    /// one-app change reads one app's blobs.
    fn read_tree(
        &mut self,
        repo: &Repository,
        commit: ObjectId,
    ) -> Result<BTreeMap<String, Arc<[u8]>>, SourceError> {
        let cache = |e: gix::Error| self.cache_error(chain(&e));
        let mut tree = repo
            .find_commit(commit)
            .map_err(cache)?
            .tree()
            .map_err(cache)?;
        if let Some(sub) = &self.spec.path {
            let not_found = || SourceError::InvalidTree {
                path: sub.clone(),
                problem: TreeProblem::FolderNotFound,
            };
            let entry = tree
                .lookup_entry_by_path(sub)
                .map_err(cache)?
                .ok_or_else(not_found)?;
            if !entry.mode().is_tree() {
                return Err(not_found());
            }
            tree = repo.find_tree(entry.object_id()).map_err(cache)?;
        }
        let mut builder = TreeBuilder::new(self.limits.clone());
        let mut blobs = HashMap::new();
        for entry in tree.traverse().breadthfirst.files().map_err(cache)? {
            match entry.mode.kind() {
                EntryKind::Tree | EntryKind::Commit => {
                    // Folders are walked into; submodules are not part of the tree.
                    continue;
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let path = checked_path(&entry.filepath)?;
                    let data = match self.last_blobs.get(&entry.oid) {
                        Some(known) => Arc::clone(known),
                        None => {
                            let header = repo.find_header(entry.oid).map_err(cache)?;
                            builder.check_size(&path, header.size())?;
                            let data = repo.find_object(entry.oid).map_err(cache)?.detach().data;
                            Arc::from(data)
                        }
                    };
                    blobs.insert(entry.oid, Arc::clone(&data));
                    builder.add_shared_file(path, data)?;
                }
                EntryKind::Link => {
                    let path = checked_path(&entry.filepath)?;
                    let data = repo.find_object(entry.oid).map_err(cache)?.detach().data;
                    builder.add_symlink(path, &data)?;
                }
            }
        }
        let files = builder.finish()?;
        self.last_blobs = blobs;
        Ok(files)
    }
}

/// The folder of a local repository URL (`file://…` or an absolute path), as gix
/// would open it; `None` for anything reached over a transport.
fn local_path(url: &str) -> Option<&Path> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    path.starts_with('/').then(|| Path::new(path))
}

/// At most this many objects are copied one by one from a local repository; more (a
/// long new history, a large import) go through `upload-pack`'s pack instead of as
/// many loose objects.
const MAX_LOCAL_COPY: usize = 2_000;

/// Copies into `cache` the objects reachable from `tip` in the local repository `local`
/// that the cache lacks, in process: a new commit's handful of objects cost a few
/// file reads and writes instead of a `git upload-pack` and its pack negotiation.
///
/// The walk stops at objects the cache has: every object in the cache came with
/// everything it reaches, because objects are written children first (a tree after
/// its entries, a commit after its tree and parents), so an interrupted copy leaves
/// no object whose closure is incomplete. Each object is re-hashed as it is written,
/// so a corrupt source is caught, not cached.
///
/// Returns false, having written nothing or only complete closures, when the copy is
/// not a small increment: a root commit the cache lacks (a first fetch or an
/// unrelated history), more than [`MAX_LOCAL_COPY`] objects, an object that does not
/// read or parse, or a write that fails. The caller then runs the real fetch.
fn copy_new_objects(local: &Repository, cache: &Repository, tip: ObjectId) -> bool {
    use gix::objs::Write;
    // (id, the object once its children are queued); children come first.
    type Read = Option<(gix::objs::Kind, Vec<u8>)>;
    let mut stack: Vec<(ObjectId, Read)> = vec![(tip, None)];
    let mut seen = std::collections::HashSet::new();
    let hash = local.object_hash();
    while let Some((id, visited)) = stack.pop() {
        if let Some((kind, data)) = visited {
            match cache.objects.write_buf(kind, &data) {
                Ok(written) if written == id => continue,
                _ => return false,
            }
        }
        if !seen.insert(id) || cache.has_object(id) {
            continue;
        }
        if seen.len() > MAX_LOCAL_COPY {
            return false;
        }
        let Ok(object) = local.find_object(id) else {
            return false;
        };
        let (kind, data) = (object.kind, object.detach().data);
        let mut children = Vec::new();
        match kind {
            gix::objs::Kind::Commit => {
                let Ok(commit) = gix::objs::CommitRef::from_bytes(&data, hash) else {
                    return false;
                };
                let parents: Vec<ObjectId> = commit.parents().collect();
                if parents.is_empty() {
                    return false;
                }
                children.push(commit.tree());
                children.extend(parents);
            }
            gix::objs::Kind::Tree => {
                for entry in gix::objs::TreeRefIter::from_bytes(&data, hash) {
                    let Ok(entry) = entry else { return false };
                    // A gitlink names a commit of another repository: never fetched.
                    if !entry.mode.is_commit() {
                        children.push(entry.oid.to_owned());
                    }
                }
            }
            gix::objs::Kind::Tag => {
                let Ok(target) = gix::objs::TagRefIter::from_bytes(&data, hash).target_id() else {
                    return false;
                };
                children.push(target);
            }
            gix::objs::Kind::Blob => {}
        }
        stack.push((id, Some((kind, data))));
        stack.extend(children.into_iter().map(|c| (c, None)));
    }
    true
}

fn has_commit(repo: &Repository, id: ObjectId) -> bool {
    repo.find_object(id)
        .is_ok_and(|o| o.kind == gix::objs::Kind::Commit)
}

/// Every message of a gix error chain, outermost first, without repeats.
fn chain(e: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in e.iter_errors() {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// The user name sent with a token alone: forges that take a token as the password of
/// basic auth (GitHub, GitLab, Gitea) accept any name; write `user:token` for one that
/// wants a particular name.
pub const TOKEN_USER: &str = "x-access-token";

/// The credentials in a `credentials_file`: its first line, `user:password` or a token
/// alone (sent as the password of [`TOKEN_USER`]). Read at every fetch, so a rotated
/// token needs no restart. The error names the file, never its content.
pub fn read_credentials(path: &std::path::Path) -> Result<gix::sec::identity::Account, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credentials_file {}: {e}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(format!(
            "credentials_file {} is empty; write a token, or user:password, on its first line",
            path.display()
        ));
    }
    let (username, password) = match line.split_once(':') {
        Some((user, pass)) if !user.is_empty() => (user, pass),
        _ => (TOKEN_USER, line),
    };
    Ok(gix::sec::identity::Account {
        username: username.to_owned(),
        password: password.to_owned(),
        oauth_refresh_token: None,
    })
}

/// The URL with any user and password replaced by `***`, safe for logs and status.
/// An ssh URL is kept as it is: its user is a login name, not a secret, and a
/// password in it is refused when desired.toml is read.
pub fn redact_url(url: &str) -> String {
    if leger_api_types::ssh_url::is_ssh_url(url) {
        return url.to_owned();
    }
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Removes the URL's secrets from free text such as a transport error.
fn redact_text(text: &str, url: &str) -> String {
    if leger_api_types::ssh_url::is_ssh_url(url) {
        return text.to_owned();
    }
    let mut out = text.replace(url, &redact_url(url));
    if let Ok(parsed) = url::Url::parse(url) {
        // A user name alone is often a token (`https://<token>@host/...`).
        let secret = parsed.password().unwrap_or(parsed.username());
        {
            if !secret.is_empty() {
                out = out.replace(secret, "***");
                let decoded = percent_decode(secret);
                if !decoded.is_empty() {
                    out = out.replace(&decoded, "***");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_user_and_password() {
        assert_eq!(
            redact_url("https://bob:s3cr%40t@git.example/r.git"),
            "https://***@git.example/r.git"
        );
        assert_eq!(
            redact_url("https://tok@git.example/r.git"),
            "https://***@git.example/r.git"
        );
        assert_eq!(redact_url("/srv/r.git"), "/srv/r.git");
        // An ssh login is no secret; replacing it would also mangle every "git" word.
        assert_eq!(
            redact_url("ssh://git@git.example/r.git"),
            "ssh://git@git.example/r.git"
        );
        assert_eq!(
            redact_text("git-upload-pack 'r.git'", "git@git.example:r.git"),
            "git-upload-pack 'r.git'"
        );
        let text = redact_text(
            "401 for https://bob:s3cr%40t@git.example/r.git with s3cr@t",
            "https://bob:s3cr%40t@git.example/r.git",
        );
        assert!(!text.contains("s3cr"), "{text}");
    }

    #[test]
    fn credentials_file_holds_a_pair_or_a_token() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("creds");
        std::fs::write(&f, "bob:s3cr@t:x\n").unwrap();
        let a = read_credentials(&f).unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("bob", "s3cr@t:x")
        );
        std::fs::write(&f, "ghp_TOKEN\n").unwrap();
        let a = read_credentials(&f).unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            (TOKEN_USER, "ghp_TOKEN")
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(read_credentials(&f).unwrap_err().contains("empty"));
        let e = read_credentials(&t.path().join("none")).unwrap_err();
        assert!(e.contains("cannot read credentials_file"), "{e}");
    }
}
