//! Builds a validated [`DesiredTree`] from a fetched [`Snapshot`]: groups files into
//! apps, parses and validates every quadlet, picks the companions they reference, and
//! refuses the revision whole on any error.
//!
//! Why whole: a half-applied revision leaves a host in a state nobody wrote down. Every
//! problem is collected, not just the first, so one push can fix them all.
//!
//! **Architecture invariant:** only quadlets and the files they reference are ever
//! installed. A README, a `leger.toml`, a `secrets/` folder of `.age` files are part of
//! the repository, never of the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use leger_api_types::app_config::AppConfig;
use leger_config::Limits;

use crate::model::{App, AppFile, DesiredTree, QuadletKind, Snapshot, Unit, install_key};
use crate::quadlet::bundle::{self, BundlePart};
use crate::quadlet::{self, Diagnostic, Installed, QuadletFile, References, Target};

/// A revision that cannot be installed, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    /// Each problem, pointing at the file (and line) to fix.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "the revision was refused: {n} problem{} to fix",
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.diagnostics {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

/// Where a problem with the revision as a whole (not one file) is reported.
const REVISION_FILE: &str = "(revision)";

/// One parsed quadlet of the tree, with what it refers to.
#[derive(Debug, Clone)]
struct Parsed {
    app: String,
    /// Path relative to the app folder (`web.container`).
    rel: String,
    q: QuadletFile,
    refs: References,
    /// Companion files, relative to the app folder.
    companions: BTreeSet<String>,
}

/// Validates `snapshot` for `target` (the podman that will run it and the quadlets
/// its host already has) and builds the tree legerd will converge to.
///
/// An app is a top-level folder holding at least one quadlet (or `.quadlets` bundle)
/// directly in it; top-level files, folders starting with `.` and folders without a
/// quadlet are not apps. A referenced `.volume`/`.network`/... must be in the tree or
/// installed on the host outside leger; then it simply adds no file dependency.
pub fn assemble(
    snapshot: &Snapshot,
    limits: &Limits,
    target: &Target,
) -> Result<DesiredTree, ValidationErrors> {
    assemble_cached(snapshot, limits, target, &mut ParseCache::default())
}

/// [`assemble`], reusing from `cache` the parse of app folders that did not change
/// since they last passed, and keeping the new ones there. The result is the same as
/// [`assemble`]'s.
pub fn assemble_cached(
    snapshot: &Snapshot,
    limits: &Limits,
    target: &Target,
    cache: &mut ParseCache,
) -> Result<DesiredTree, ValidationErrors> {
    let (expanded, origins, mut diags) = split_bundles(snapshot);
    match assemble_expanded(&expanded, limits, target, cache) {
        Ok(tree) if diags.is_empty() => Ok(tree),
        Ok(_) => Err(ValidationErrors { diagnostics: diags }),
        Err(e) => {
            diags.extend(e.diagnostics.into_iter().map(|d| origins.locate(d)));
            Err(ValidationErrors { diagnostics: diags })
        }
    }
}

/// Where the quadlets taken out of bundles came from, by install key.
#[derive(Default)]
struct Origins(BTreeMap<String, (String, BundlePart)>);

impl Origins {
    /// Points a diagnostic about a bundle's quadlet at the bundle's line.
    fn locate(&self, d: Diagnostic) -> Diagnostic {
        match self.0.get(&d.file) {
            Some((bundle, part)) => Diagnostic::new(
                bundle,
                Some(d.line.map_or(part.first_line, |l| part.first_line + l - 1)),
                format!("{}: {}", part.name, d.message),
            ),
            None => d,
        }
    }
}

/// Replaces each `.quadlets` bundle directly in an app folder by the quadlets it
/// holds. A part whose name another file of the folder already has is refused.
fn split_bundles(snapshot: &Snapshot) -> (Snapshot, Origins, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut origins = Origins::default();
    let mut files = snapshot.files.clone();
    for (path, bytes) in &snapshot.files {
        let Some((app, rel)) = path.split_once('/') else {
            continue;
        };
        if app.starts_with('.') || rel.contains('/') || !bundle::is_bundle(rel) {
            continue;
        }
        files.remove(path);
        let (parts, errors) = bundle::split(path, bytes);
        diags.extend(errors);
        for part in parts {
            let key = install_key(app, &part.name);
            if snapshot.files.contains_key(&key) || origins.0.contains_key(&key) {
                let other = origins.0.get(&key).map_or(key.clone(), |(b, _)| b.clone());
                diags.push(Diagnostic::new(
                    path,
                    Some(part.first_line),
                    format!(
                        "{} is also defined by {other}: a name may be used once per app folder, so rename one",
                        part.name
                    ),
                ));
                continue;
            }
            files.insert(key.clone(), Arc::from(part.text.as_bytes()));
            origins.0.insert(key, (path.clone(), part));
        }
    }
    let expanded = Snapshot {
        revision: snapshot.revision.clone(),
        files,
    };
    (expanded, origins, diags)
}

/// [`assemble`] once bundles are split.
fn assemble_expanded(
    snapshot: &Snapshot,
    limits: &Limits,
    target: &Target,
    cache: &mut ParseCache,
) -> Result<DesiredTree, ValidationErrors> {
    let mut diags = Vec::new();
    if snapshot.files.len() > limits.max_files {
        diags.push(Diagnostic::new(
            REVISION_FILE,
            None,
            format!(
                "the revision holds {} files, more than the limit of {}: remove files or raise max_files in [limits]",
                snapshot.files.len(),
                limits.max_files
            ),
        ));
    }

    let folders = group_by_folder(snapshot);
    let mut parsed: Vec<Parsed> = Vec::new();
    let mut configs: BTreeMap<String, AppConfig> = BTreeMap::new();
    for (app, files) in &folders {
        let one = match cache.get(app, files, limits, &target.keys) {
            Some(one) => one,
            None => {
                let (one, app_diags) = parse_app(app, files, limits, &target.keys);
                if app_diags.is_empty() {
                    cache.put(app, files, limits, &target.keys, one.clone());
                }
                diags.extend(app_diags);
                one
            }
        };
        if let Some(config) = one.config {
            configs.insert(app.to_string(), config);
        }
        parsed.extend(one.parsed);
    }

    check_duplicates(&parsed, &mut diags);
    check_quadlet_references(&parsed, target, &mut diags);
    let mut oversized = BTreeSet::new();
    for p in &mut parsed {
        p.companions = companions(p, snapshot, limits, &mut oversized, &mut diags);
    }

    if !diags.is_empty() {
        return Err(ValidationErrors { diagnostics: diags });
    }
    let mut tree = build_tree(snapshot, &parsed);
    for (app, config) in configs {
        if let Some(a) = tree.apps.get_mut(&app) {
            a.config = config;
        }
    }
    check_secret_names(&tree, &mut diags);
    if !diags.is_empty() {
        return Err(ValidationErrors { diagnostics: diags });
    }
    Ok(tree)
}

/// A `leger.toml` secret mapping must name a secret the app uses, and two apps must
/// not map one Podman secret to different source names (it holds one value).
fn check_secret_names(tree: &DesiredTree, diags: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for app in tree.apps.values() {
        let file = install_key(&app.name, APP_CONFIG);
        let used: BTreeSet<&str> = app
            .units
            .iter()
            .flat_map(|u| u.secrets.iter().map(String::as_str))
            .collect();
        for (podman, source) in &app.config.secrets.names {
            if !used.contains(podman.as_str()) {
                diags.push(Diagnostic::new(
                    &file,
                    None,
                    format!("[secrets.names] maps {podman:?}, but no quadlet of app {} has Secret={podman}", app.name),
                ));
            }
            if let Some((other_app, other_source)) = seen.insert(podman, (&app.name, source))
                && other_source != source
            {
                diags.push(Diagnostic::new(
                    &file,
                    None,
                    format!(
                        "[secrets.names] maps {podman:?} to {source:?}, but app {other_app} maps it to {other_source:?}: a Podman secret holds one value"
                    ),
                ));
            }
        }
    }
}

/// What one app folder parses to on its own: its `leger.toml` and its quadlets with
/// what they reference. Everything here depends on the folder's files, the limits and
/// the key table only, so [`ParseCache`] may reuse it.
#[derive(Debug, Clone, Default)]
struct AppParse {
    config: Option<AppConfig>,
    parsed: Vec<Parsed>,
}

/// Parses one app folder; a disabled app (`enabled = false`) parses to nothing.
fn parse_app(
    app: &str,
    files: &FolderFiles<'_>,
    limits: &Limits,
    keys: &quadlet::KeyTable,
) -> (AppParse, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut out = AppParse::default();
    if let Some((_, bytes)) = files.iter().find(|(rel, _)| *rel == APP_CONFIG) {
        let path = install_key(app, APP_CONFIG);
        match std::str::from_utf8(bytes)
            .map_err(|_| "not valid UTF-8 text".to_owned())
            .and_then(AppConfig::from_toml_str)
        {
            Ok(config) if !config.is_enabled() => {
                // `enabled = false`: the app is not part of this revision at all.
                return (out, diags);
            }
            Ok(config) => out.config = Some(config),
            Err(e) => diags.push(Diagnostic::new(&path, None, e)),
        }
    }
    let has_bundle = files
        .iter()
        .any(|(rel, _)| !rel.contains('/') && bundle::is_bundle(rel));
    let quadlets: Vec<(&str, &Arc<[u8]>)> = files
        .iter()
        .filter(|(rel, _)| is_quadlet_name(rel))
        .map(|(rel, bytes)| (*rel, *bytes))
        .collect();
    if quadlets.is_empty() && !has_bundle {
        return (out, diags);
    }
    if let Some(problem) = app_name_problem(app) {
        diags.push(Diagnostic::new(app, None, problem));
    }
    for (rel, bytes) in quadlets {
        let path = install_key(app, rel);
        if let Some(d) = check_size(&path, bytes, limits) {
            diags.push(d);
            continue;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            diags.push(Diagnostic::new(
                &path,
                None,
                "not valid UTF-8 text: save the quadlet as UTF-8",
            ));
            continue;
        };
        let q = match quadlet::parse(&path, text) {
            Ok(q) => q,
            Err(errors) => {
                diags.extend(errors);
                continue;
            }
        };
        diags.extend(quadlet::validate(&q, keys));
        let refs = quadlet::references(&q);
        out.parsed.push(Parsed {
            app: app.to_string(),
            rel: rel.to_string(),
            q,
            refs,
            companions: BTreeSet::new(),
        });
    }
    (out, diags)
}

/// The parse of app folders that passed on their own before, so a new revision
/// re-parses only the folders whose files changed (incremental validation). A folder
/// is reused only when its every file is byte for byte the same, for the same limits
/// and key table; the checks across apps (names, references, companions, secrets) run
/// over every app each time.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// The limits and key table the entries were made with.
    made_with: Option<(u64, quadlet::KeyTable)>,
    apps: std::collections::HashMap<String, (OwnedFolder, AppParse)>,
}

/// A folder's files as [`ParseCache`] keeps them: (path inside the folder, bytes).
type OwnedFolder = Vec<(String, Arc<[u8]>)>;

impl ParseCache {
    fn get(
        &self,
        app: &str,
        files: &FolderFiles<'_>,
        limits: &Limits,
        keys: &quadlet::KeyTable,
    ) -> Option<AppParse> {
        if self.made_with != Some((limits.max_file_size, *keys)) {
            return None;
        }
        let (seen, parse) = self.apps.get(app)?;
        let same = seen.len() == files.len()
            && seen
                .iter()
                .zip(files)
                .all(|((rel, bytes), (r, b))| rel == r && (Arc::ptr_eq(bytes, b) || bytes == *b));
        same.then(|| parse.clone())
    }

    fn put(
        &mut self,
        app: &str,
        files: &FolderFiles<'_>,
        limits: &Limits,
        keys: &quadlet::KeyTable,
        parse: AppParse,
    ) {
        let made_with = Some((limits.max_file_size, *keys));
        if self.made_with != made_with {
            self.apps.clear();
            self.made_with = made_with;
        }
        let files = files
            .iter()
            .map(|(rel, bytes)| (rel.to_string(), Arc::clone(bytes)))
            .collect();
        self.apps.insert(app.to_owned(), (files, parse));
    }

    /// Number of folders held.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// An app's own settings file: read by legerd, never installed.
const APP_CONFIG: &str = "leger.toml";

/// A folder's files: (path inside the folder, bytes).
type FolderFiles<'a> = Vec<(&'a str, &'a Arc<[u8]>)>;

/// Files of each top-level folder (not starting with `.`), by path inside it.
fn group_by_folder(snapshot: &Snapshot) -> BTreeMap<&str, FolderFiles<'_>> {
    let mut folders: BTreeMap<&str, FolderFiles<'_>> = BTreeMap::new();
    for (path, bytes) in &snapshot.files {
        let Some((top, rel)) = path.split_once('/') else {
            continue;
        };
        if top.starts_with('.') {
            continue;
        }
        folders.entry(top).or_default().push((rel, bytes));
    }
    folders
}

/// A quadlet directly in the app folder (not in a sub-folder, not hidden).
fn is_quadlet_name(rel: &str) -> bool {
    !rel.contains('/') && !rel.starts_with('.') && QuadletKind::from_file_name(rel).is_some()
}

/// Why `name` cannot be an app folder, if it cannot. Beyond leger's own character
/// rules, podman 6 refuses an application named like a quadlet (`web.container`):
/// `podman quadlet list` would take the folder for a file.
fn app_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let chars_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !chars_ok {
        return Some(format!(
            "'{name}' is not a valid app name: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        ));
    }
    if QuadletKind::from_file_name(name).is_some() || bundle::is_bundle(name) {
        return Some(format!(
            "'{name}' is not a valid app name: it ends in a quadlet extension, which podman refuses for an application folder; rename the folder"
        ));
    }
    None
}

/// A `Pod=`, `Network=`, `Volume=`, `Image=` or `Mount=` naming a quadlet that is
/// neither in the tree nor installed on the host: the generator would refuse the unit
/// ("requested Quadlet source ... was not found").
///
/// `[Unit]` dependencies (`After=db.container`) count from podman 5.5 on: older
/// generators pass an unknown one through unchanged.
fn check_quadlet_references(parsed: &[Parsed], target: &Target, diags: &mut Vec<Diagnostic>) {
    let in_tree: BTreeSet<&str> = parsed.iter().map(|p| p.q.name.as_str()).collect();
    let installed = &target.installed;
    let unit_deps_checked = target.keys.version() >= quadlet::PodmanVersion::new(5, 5, 0, None);
    for p in parsed {
        for r in &p.refs.quadlet_refs {
            let name = r.path.as_str();
            let unit_dep = quadlet::references::UNIT_DEPENDENCY_KEYS.contains(&r.key.as_str());
            if in_tree.contains(name) || (unit_dep && !unit_deps_checked) {
                continue;
            }
            let message = match installed {
                Installed::Host(names) if names.contains(name) => continue,
                Installed::Host(_) => format!(
                    "{}={name}: {name} is neither in the revision nor installed on this host: add it to the revision or fix the name",
                    r.key
                ),
                Installed::Offline => format!(
                    "{}={name}: {name} is not in the tree: add it, or if the host has it installed outside leger, check on the host instead (legerd also looks at installed quadlets)",
                    r.key
                ),
            };
            diags.push(Diagnostic::new(&p.q.file, Some(r.line), message));
        }
    }
}

fn check_size(path: &str, bytes: &[u8], limits: &Limits) -> Option<Diagnostic> {
    (bytes.len() as u64 > limits.max_file_size).then(|| {
        Diagnostic::new(
            path,
            None,
            format!(
                "the file is {} bytes, more than the limit of {}: shrink it or raise max_file_size in [limits]",
                bytes.len(),
                limits.max_file_size
            ),
        )
    })
}

/// Quadlet knows files by base name and skips a second file of the same name without
/// a word; two files making the same unit would fight over it. Both are refused.
fn check_duplicates(parsed: &[Parsed], diags: &mut Vec<Diagnostic>) {
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    let mut by_unit: BTreeMap<String, &str> = BTreeMap::new();
    for p in parsed {
        if let Some(first) = by_name.insert(&p.q.name, &p.q.file) {
            by_name.insert(&p.q.name, first);
            diags.push(Diagnostic::new(
                &p.q.file,
                None,
                format!(
                    "the file name '{}' is also used by {first}: podman's quadlet knows files by name and would ignore one of them, so rename one",
                    p.q.name
                ),
            ));
        }
        let unit = p.q.unit_name();
        if let Some(first) = by_unit.get(&unit) {
            diags.push(Diagnostic::new(
                &p.q.file,
                None,
                format!(
                    "the unit {unit} is also generated by {first}: rename one file or give it another ServiceName="
                ),
            ));
        } else {
            by_unit.insert(unit, &p.q.file);
        }
    }
}

/// Resolves `p`'s file references inside its app folder. A reference to a folder
/// includes every file under it.
fn companions(
    p: &Parsed,
    snapshot: &Snapshot,
    limits: &Limits,
    oversized: &mut BTreeSet<String>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // Quadlets sit directly in the app folder, so the app folder is their folder.
    for fr in &p.refs.files {
        let Some(rel) = normalize(&fr.path) else {
            diags.push(Diagnostic::new(
                &p.q.file,
                Some(fr.line),
                format!(
                    "{}={} points outside the app folder '{}': keep companion files inside the app folder",
                    fr.key, fr.path, p.app
                ),
            ));
            continue;
        };
        let full = if rel.is_empty() {
            p.app.clone()
        } else {
            install_key(&p.app, &rel)
        };
        let mut found = Vec::new();
        if snapshot.files.contains_key(&full) {
            found.push(rel.clone());
        } else {
            let prefix = format!("{full}/");
            for path in snapshot.files.keys().filter(|k| k.starts_with(&prefix)) {
                found.push(path[p.app.len() + 1..].to_string());
            }
        }
        if found.is_empty() {
            diags.push(Diagnostic::new(
                &p.q.file,
                Some(fr.line),
                format!(
                    "{}={}: {full} is not in the revision: add it or fix the path",
                    fr.key, fr.path
                ),
            ));
        }
        for rel in found {
            let key = install_key(&p.app, &rel);
            if let Some(d) = check_size(&key, &snapshot.files[&key], limits)
                && oversized.insert(key)
            {
                diags.push(d);
            }
            out.insert(rel);
        }
    }
    out
}

/// Resolves `.` and `..` in a relative path; `None` when it climbs above its start.
/// `Some("")` means the start folder itself.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

fn build_tree(snapshot: &Snapshot, parsed: &[Parsed]) -> DesiredTree {
    let by_name: BTreeMap<&str, &Parsed> = parsed.iter().map(|p| (p.q.name.as_str(), p)).collect();
    let mut apps: BTreeMap<String, App> = BTreeMap::new();
    for p in parsed {
        let app = apps.entry(p.app.clone()).or_insert_with(|| App {
            config: Default::default(),
            name: p.app.clone(),
            files: BTreeMap::new(),
            units: Vec::new(),
        });
        for rel in std::iter::once(&p.rel).chain(&p.companions) {
            let bytes = &snapshot.files[&install_key(&p.app, rel)];
            app.files
                .insert(rel.clone(), AppFile::new(Arc::clone(bytes)));
        }

        let mut deps = own_files(p);
        for name in &p.refs.quadlets {
            let Some(used) = by_name.get(name.as_str()) else {
                continue;
            };
            deps.extend(own_files(used));
            // One level further: a pod's network, a volume's image.
            for inner in &used.refs.quadlets {
                if let Some(inner) = by_name.get(inner.as_str()) {
                    deps.extend(own_files(inner));
                }
            }
        }
        let pod = p
            .refs
            .quadlets
            .iter()
            .filter(|name| name.ends_with(".pod"))
            .find_map(|name| by_name.get(name.as_str()))
            .map(|pod| pod.q.unit_name());
        app.units.push(Unit {
            name: p.q.unit_name(),
            kind: p.q.kind,
            source_file: p.rel.clone(),
            depends_on_files: deps,
            secrets: p.refs.secrets.clone(),
            pod,
        });
    }
    for app in apps.values_mut() {
        app.units
            .sort_by(|a, b| (a.kind.start_rank(), &a.name).cmp(&(b.kind.start_rank(), &b.name)));
    }
    let mut layers = crate::overlay::layers_of(snapshot);
    layers.retain(|app, _| apps.contains_key(app));
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in parsed {
        let names = p.refs.quadlets.iter().chain(&p.refs.ordering).cloned();
        uses.entry(p.app.clone()).or_default().extend(names);
    }
    uses.retain(|_, names| !names.is_empty());
    DesiredTree {
        revision: snapshot.revision.clone(),
        apps,
        layers,
        uses,
    }
}

/// A quadlet's own install key and its companions'.
fn own_files(p: &Parsed) -> BTreeSet<String> {
    std::iter::once(&p.rel)
        .chain(&p.companions)
        .map(|rel| install_key(&p.app, rel))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        let v = crate::quadlet::PodmanVersion::new(5, 4, 2, None);
        let keys = crate::quadlet::KeyTable::for_version(v, crate::quadlet::Basis::Host).unwrap();
        Target {
            keys,
            installed: Installed::Host(["host.volume".to_string()].into()),
        }
    }

    fn limits() -> Limits {
        Limits {
            max_file_size: 1 << 20,
            max_files: 1000,
        }
    }

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            revision: "rev-1".into(),
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), Arc::from(c.as_bytes())))
                .collect(),
        }
    }

    fn keys(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        assemble(&snapshot(files), &limits(), &target())
            .unwrap_err()
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    const WEB: &str = "[Container]\nImage=localhost/web:1\nEnvironmentFile=web.env\nVolume=./conf:/etc/conf:ro\nVolume=data.volume:/data\nNetwork=net.network\nSecret=db-pass,type=env\n";

    #[test]
    fn assemble_cached_gives_what_assemble_gives_and_still_checks_across_apps() {
        let net = "[Network]\n";
        let user = "[Container]\nImage=x\nNetwork=shared.network\n";
        let mut cache = ParseCache::default();
        let s1 = snapshot(&[("infra/shared.network", net), ("web/web.container", user)]);
        let t1 = assemble_cached(&s1, &limits(), &target(), &mut cache).unwrap();
        assert_eq!(t1, assemble(&s1, &limits(), &target()).unwrap());
        assert_eq!(cache.len(), 2);

        // web changes; infra comes from the cache: the same tree as from scratch.
        let s2 = snapshot(&[
            ("infra/shared.network", net),
            (
                "web/web.container",
                "[Container]\nImage=y\nNetwork=shared.network\n",
            ),
        ]);
        let t2 = assemble_cached(&s2, &limits(), &target(), &mut cache).unwrap();
        assert_eq!(t2, assemble(&s2, &limits(), &target()).unwrap());

        // infra renames its network; the unchanged, cached web is still refused for it.
        let s3 = snapshot(&[
            ("infra/other.network", net),
            (
                "web/web.container",
                "[Container]\nImage=y\nNetwork=shared.network\n",
            ),
        ]);
        let e = assemble_cached(&s3, &limits(), &target(), &mut cache).unwrap_err();
        assert!(e.to_string().contains("Network=shared.network"), "{e}");

        // A folder with problems is never kept: it fails the same way every time.
        let s4 = snapshot(&[
            ("infra/shared.network", net),
            ("bad/bad.container", "[Container]\nNotAKey=1\n"),
        ]);
        let first = assemble_cached(&s4, &limits(), &target(), &mut cache).unwrap_err();
        let again = assemble_cached(&s4, &limits(), &target(), &mut cache).unwrap_err();
        assert_eq!(first, again);
        assert_eq!(first, assemble(&s4, &limits(), &target()).unwrap_err());
    }

    #[test]
    fn assemble_drops_a_disabled_app_and_keeps_overlay_layers() {
        let q = "[Container]\nImage=x\n";
        let tree = assemble(
            &snapshot(&[
                ("a/a.container", q),
                ("b/b.container", q),
                ("b/leger.toml", "enabled = false\n"),
                (crate::overlay::LAYERS_FILE, "a\thosts/h1/apps\nb\tapps\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        assert_eq!(tree.apps.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            tree.layers.get("a").map(String::as_str),
            Some("hosts/h1/apps")
        );
        assert!(!tree.layers.contains_key("b"));
    }

    #[test]
    fn assemble_checks_leger_toml_secret_names() {
        let q = "[Container]\nImage=x\nSecret=db-pass,type=env,target=P\n";
        let tree = assemble(
            &snapshot(&[
                ("db/db.container", q),
                ("db/leger.toml", "[secrets.names]\ndb-pass = \"team/db\"\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        assert_eq!(crate::secrets::source_names(&tree)["db-pass"], "team/db");
        // A mapping for a secret the app does not use is a typo.
        let e = assemble(
            &snapshot(&[
                ("db/db.container", q),
                ("db/leger.toml", "[secrets.names]\ndb-pas = \"team/db\"\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("db/leger.toml") && e.contains("db-pas"), "{e}");
        // Two apps may not map one Podman secret to different source names.
        let q2 = "[Container]\nImage=x\nSecret=db-pass\n";
        let e = assemble(
            &snapshot(&[
                ("a/a.container", q),
                ("a/leger.toml", "[secrets.names]\ndb-pass = \"one\"\n"),
                ("b/b.container", q2),
                ("b/leger.toml", "[secrets.names]\ndb-pass = \"two\"\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds one value"), "{e}");
    }

    #[test]
    fn assemble_reads_leger_toml_and_refuses_a_bad_one() {
        let tree = assemble(
            &snapshot(&[
                ("web/web.container", "[Container]\nImage=x\n"),
                ("web/leger.toml", "[health]\nsettle = \"1s\"\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        assert_eq!(
            tree.apps["web"].config.health.settle,
            Some(std::time::Duration::from_secs(1))
        );
        assert!(
            !tree.apps["web"].files.contains_key("leger.toml"),
            "never installed"
        );
        let e = assemble(
            &snapshot(&[
                ("web/web.container", "[Container]\nImage=x\n"),
                ("web/leger.toml", "[health]\nsetle = \"1s\"\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("web/leger.toml") && e.contains("setle"), "{e}");
    }

    #[test]
    fn assemble_installs_quadlets_and_companions_only() {
        let tree = assemble(
            &snapshot(&[
                ("README.md", "# repo"),
                ("web/README.md", "about web"),
                ("web/leger.toml", "[health]\ntimeout = \"2m\"\n"),
                ("web/web.container", WEB),
                ("web/web.env", "A=1"),
                ("web/conf/nginx.conf", "server {}"),
                ("web/conf/sites/a.conf", "a"),
                ("web/data.volume", "[Volume]\n"),
                ("web/notes/todo.txt", "later"),
                ("secrets/db.age", "age"),
                (".github/ci.container", "[Container]\nImage=x\n"),
                ("shared/net.network", "[Network]\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        assert_eq!(tree.revision, "rev-1");
        assert_eq!(tree.apps.keys().collect::<Vec<_>>(), vec!["shared", "web"]);
        let web = &tree.apps["web"];
        assert_eq!(
            web.files.keys().cloned().collect::<BTreeSet<_>>(),
            keys(&[
                "conf/nginx.conf",
                "conf/sites/a.conf",
                "data.volume",
                "web.container",
                "web.env"
            ])
        );
        assert_eq!(
            web.files["web.env"].hash,
            crate::model::ContentHash::of(b"A=1")
        );
        let names: Vec<_> = web.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, vec!["data-volume.service", "web.service"]);
        let unit = &web.units[1];
        assert_eq!(unit.kind, QuadletKind::Container);
        assert_eq!(unit.source_file, "web.container");
        assert_eq!(
            unit.depends_on_files,
            keys(&[
                "shared/net.network",
                "web/conf/nginx.conf",
                "web/conf/sites/a.conf",
                "web/data.volume",
                "web/web.container",
                "web/web.env"
            ])
        );
        assert_eq!(unit.secrets, keys(&["db-pass"]));
    }

    #[test]
    fn assemble_follows_dependencies_one_level_across_apps() {
        let tree = assemble(
            &snapshot(&[
                ("net/front.network", "[Network]\n"),
                ("pods/app.pod", "[Pod]\nNetwork=front.network\n"),
                (
                    "web/web.container",
                    "[Container]\nImage=localhost/web\nPod=app.pod\nVolume=host.volume:/x\n",
                ),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        let web = &tree.apps["web"].units[0];
        // host.volume is not in the tree: allowed, no dependency.
        assert_eq!(
            web.depends_on_files,
            keys(&["net/front.network", "pods/app.pod", "web/web.container"])
        );
    }

    #[test]
    fn assemble_orders_units_by_kind_then_name() {
        let tree = assemble(
            &snapshot(&[
                ("a/z.container", "[Container]\nImage=x\n"),
                ("a/b.container", "[Container]\nImage=x\n"),
                ("a/n.network", "[Network]\n"),
                ("a/v.volume", "[Volume]\n"),
                ("a/p.pod", "[Pod]\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        let names: Vec<_> = tree.apps["a"]
            .units
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "n-network.service",
                "v-volume.service",
                "p-pod.service",
                "b.service",
                "z.service"
            ]
        );
    }

    #[test]
    fn assemble_refuses_escaping_and_missing_references() {
        let errs = errors(&[
            ("shared/x.env", "A=1"),
            (
                "web/web.container",
                "[Container]\nImage=x\nEnvironmentFile=../shared/x.env\nVolume=./missing:/m\nEnvironmentFile=./ok/../../../etc/passwd\n",
            ),
        ]);
        assert_eq!(
            errs,
            vec![
                "web/web.container:4: Volume=./missing: web/missing is not in the revision: add it or fix the path",
                "web/web.container:3: EnvironmentFile=../shared/x.env points outside the app folder 'web': keep companion files inside the app folder",
                "web/web.container:5: EnvironmentFile=./ok/../../../etc/passwd points outside the app folder 'web': keep companion files inside the app folder",
            ]
        );
    }

    #[test]
    fn assemble_refuses_duplicate_units_across_apps() {
        let errs = errors(&[
            ("a/web.container", "[Container]\nImage=x\n"),
            (
                "b/site.container",
                "[Container]\nImage=x\nServiceName=web\n",
            ),
            (
                "c/web.container",
                "[Container]\nImage=x\nServiceName=other\n",
            ),
        ]);
        assert_eq!(
            errs,
            vec![
                "b/site.container: the unit web.service is also generated by a/web.container: rename one file or give it another ServiceName=",
                "c/web.container: the file name 'web.container' is also used by a/web.container: podman's quadlet knows files by name and would ignore one of them, so rename one",
            ]
        );
    }

    #[test]
    fn assemble_reports_all_errors_at_once() {
        let snap = Snapshot {
            revision: "r".into(),
            files: [
                (
                    "a/bad.container",
                    b"[Container]\nImage=x\nPublishPrt=1\n".to_vec(),
                ),
                ("a/syntax.volume", b"[Volume]\nnot a line\n".to_vec()),
                ("a/binary.network", vec![0xff, 0xfe]),
                ("b/noimage.container", b"[Container]\n".to_vec()),
                ("bad name/x.container", b"[Container]\nImage=x\n".to_vec()),
                ("c/big.container", vec![b'#'; 2000]),
            ]
            .into_iter()
            .map(|(p, c)| (p.to_string(), Arc::from(c)))
            .collect(),
        };
        let err = assemble(
            &snap,
            &Limits {
                max_file_size: 1000,
                max_files: 5,
            },
            &target(),
        )
        .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("the revision was refused: 7 problems to fix\n  "),
            "{shown}"
        );
        let lines: Vec<_> = shown.lines().skip(1).map(str::trim).collect();
        assert_eq!(lines.len(), 7, "{shown}");
        assert!(
            lines[0]
                .starts_with("(revision): the revision holds 6 files, more than the limit of 5")
        );
        assert!(lines[1].starts_with("a/bad.container:3: unknown key 'PublishPrt'"));
        assert!(lines[2].starts_with("a/binary.network: not valid UTF-8"));
        assert!(lines[3].starts_with("a/syntax.volume:2: 'not a line' is neither"));
        assert!(lines[4].starts_with("b/noimage.container: no Image= or Rootfs="));
        assert!(lines[5].starts_with("bad name: 'bad name' is not a valid app name"));
        assert!(
            lines[6].starts_with(
                "c/big.container: the file is 2000 bytes, more than the limit of 1000"
            )
        );
    }

    #[test]
    fn assemble_ignores_folders_without_quadlets() {
        let tree = assemble(
            &snapshot(&[
                ("secrets/db.age", "age"),
                ("docs/web/web.container", "[Container]\nImage=x\n"),
                ("notes.container", "[Container]\nImage=x\n"),
            ]),
            &limits(),
            &target(),
        )
        .unwrap();
        assert!(tree.apps.is_empty());
    }

    #[test]
    fn assemble_splits_bundles_into_installed_quadlets() {
        let bundle = "# FileName=web\n[Container]\nImage=x\nVolume=data.volume:/d\n---\n# FileName=data\n[Volume]\n";
        let tree = assemble(
            &snapshot(&[("web/site.quadlets", bundle)]),
            &limits(),
            &target(),
        )
        .unwrap();
        let web = &tree.apps["web"];
        assert_eq!(
            web.files.keys().cloned().collect::<BTreeSet<_>>(),
            keys(&["data.volume", "web.container"])
        );
        assert_eq!(
            &*web.files["data.volume"].content,
            b"# FileName=data\n[Volume]\n"
        );
        assert_eq!(
            web.units[1].depends_on_files,
            keys(&["web/data.volume", "web/web.container"])
        );
    }

    #[test]
    fn assemble_points_bundle_errors_at_the_bundle_line() {
        let errs = errors(&[
            (
                "web/site.quadlets",
                "# FileName=web\n[Container]\nImage=x\nPublishPrt=80\n---\n# FileName=../../etc/x\n[Volume]\n---\n# FileName=db\n[Volume]\n",
            ),
            ("web/db.volume", "[Volume]\n"),
        ]);
        assert_eq!(
            errs,
            vec![
                "web/site.quadlets:6: FileName=../../etc/x escapes the app folder: a bundle's quadlets stay in its folder, so use a plain name",
                "web/site.quadlets:9: db.volume is also defined by web/db.volume: a name may be used once per app folder, so rename one",
                "web/site.quadlets:4: web.container: unknown key 'PublishPrt' in [Container]: no podman release's quadlet supports it; did you mean 'PublishPort'?",
            ]
        );
        // A duplicate with a plain file of the folder, once the bundle parses.
        let errs = errors(&[
            ("web/site.quadlets", "# FileName=db\n[Volume]\n"),
            ("web/db.volume", "[Volume]\n"),
        ]);
        assert_eq!(
            errs,
            vec![
                "web/site.quadlets:1: db.volume is also defined by web/db.volume: a name may be used once per app folder, so rename one"
            ]
        );
    }

    #[test]
    fn assemble_refuses_app_folders_named_like_quadlets() {
        let errs = errors(&[("web.container/web.container", "[Container]\nImage=x\n")]);
        assert_eq!(
            errs,
            vec![
                "web.container: 'web.container' is not a valid app name: it ends in a quadlet extension, which podman refuses for an application folder; rename the folder"
            ]
        );
        assert!(
            assemble(
                &snapshot(&[("web.v2/web.container", "[Container]\nImage=x\n")]),
                &limits(),
                &target()
            )
            .is_ok()
        );
    }

    #[test]
    fn assemble_refuses_references_to_quadlets_nowhere() {
        // host.volume is installed on the host (see target()); gone.network is not.
        let errs = errors(&[(
            "web/web.container",
            "[Container]\nImage=x\nVolume=host.volume:/h\nNetwork=gone.network\nPod=p.pod\n",
        )]);
        assert_eq!(
            errs,
            vec![
                "web/web.container:4: Network=gone.network: gone.network is neither in the revision nor installed on this host: add it to the revision or fix the name",
                "web/web.container:5: Pod=p.pod: p.pod is neither in the revision nor installed on this host: add it to the revision or fix the name",
            ]
        );
    }

    #[test]
    fn assemble_checks_unit_dependencies_from_podman_5_5() {
        let files = [(
            "web/web.container",
            "[Unit]\nAfter=db.container\n[Container]\nImage=x\n",
        )];
        // 5.4.2's generator passes an unknown dependency through.
        assert!(assemble(&snapshot(&files), &limits(), &target()).is_ok());
        let v = crate::quadlet::PodmanVersion::new(5, 5, 0, None);
        let keys = crate::quadlet::KeyTable::for_version(v, crate::quadlet::Basis::Host).unwrap();
        let e = assemble(&snapshot(&files), &limits(), &Target::offline(keys))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("web/web.container:2: After=db.container: db.container is not in the tree"),
            "{e}"
        );
    }

    #[test]
    fn normalize_resolves_dots_inside_the_folder() {
        assert_eq!(normalize("./a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("a/..").as_deref(), Some(""));
        assert_eq!(normalize("../a"), None);
        assert_eq!(normalize("a/../../a"), None);
    }
}
