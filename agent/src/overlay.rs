//! Per-host and per-group overlays: one source tree, a different composition per host.
//!
//! A source with `overlays` is fetched whole (its root), then composed here into the
//! snapshot this host converges to: the common layer (git's `path`, or the root), then
//! each expanded template in order. An app folder of a later layer replaces the
//! same-named folder whole; an app whose layer `leger.toml` says `enabled = false` is
//! removed. A missing layer folder is an empty layer.
//!
//! **Identity.** The composed snapshot's revision is `<source revision>+o<id>`, where
//! the id is a digest of the layer list. Everything keyed by revision (the validation
//! cache, rejected and failed marks, the revision store, the applied revision) thus
//! tells two compositions of one commit apart: a host whose groups change never reuses
//! a tree validated for its old groups, and a failed mark on one composition does not
//! block another. Without overlays, revisions are exactly the source's.
//!
//! The composed snapshot carries [`LAYERS_FILE`], a hidden file (never an app, never
//! installed) naming each app's layer, so status can say where an app came from even
//! after a rollback loads the snapshot from the revision store.

use std::collections::BTreeMap;
use std::sync::Arc;

use leger_api_types::app_config::AppConfig;
use leger_api_types::overlay;
use sha2::{Digest, Sha256};

use crate::model::Snapshot;

/// Where a composed snapshot records each app's layer: `app<TAB>layer` lines.
pub const LAYERS_FILE: &str = ".leger/layers";

/// The name the common layer goes by in status when it is the source root.
pub const ROOT_LAYER: &str = ".";

/// How one host composes a source: the common layer and the expanded overlay layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composition {
    /// The common layer, relative to the source root; `None` is the root itself.
    pub base: Option<String>,
    /// Expanded layer folders, in the order they apply.
    pub layers: Vec<String>,
    /// First folders of the templates; never apps of a root common layer.
    roots: Vec<String>,
}

impl Composition {
    /// The composition of `templates` for `host` in `groups`; `None` without overlays,
    /// so a source without them behaves exactly as before.
    pub fn new(
        templates: &[String],
        base: Option<&str>,
        host: &str,
        groups: &[String],
    ) -> Option<Self> {
        if templates.is_empty() {
            return None;
        }
        let mut roots: Vec<String> = templates
            .iter()
            .map(|t| overlay::template_root(t).to_owned())
            .collect();
        roots.dedup();
        Some(Composition {
            base: base.map(|b| b.trim_matches('/').to_owned()),
            layers: overlay::expand(templates, host, groups),
            roots,
        })
    }

    /// The composition `desired` asks for on this host, from `[fleet]`.
    pub fn for_source(
        desired: &leger_api_types::DesiredState,
        fleet: &leger_config::fleet::FleetSettings,
    ) -> Option<Self> {
        let base = match &desired.source {
            leger_api_types::SourceSpec::Git(g) => g.path.as_deref(),
            _ => None,
        };
        Composition::new(desired.overlays(), base, &fleet.host, &fleet.groups)
    }

    /// A short digest of the layer list, part of the composed revision.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.base.as_deref().unwrap_or(ROOT_LAYER));
        for l in &self.layers {
            h.update(b"\n");
            h.update(l);
        }
        format!("o{}", &hex::encode(h.finalize())[..12])
    }
}

/// The git source to fetch: with overlays, the whole repository, since the layers sit
/// beside the common layer's `path`.
pub fn whole_tree(g: &leger_api_types::GitSourceSpec) -> leger_api_types::GitSourceSpec {
    let mut g = g.clone();
    if !g.overlays.is_empty() {
        g.path = None;
    }
    g
}

/// The source revision inside a possibly composed revision: what the source itself
/// compares against (a git ancestry check, a manifest downgrade guard).
pub fn source_revision(revision: &str) -> &str {
    revision.split_once('+').map_or(revision, |(r, _)| r)
}

/// Composes `root` (the whole source tree) for one host.
pub fn compose(root: &Snapshot, c: &Composition) -> Snapshot {
    let mut files: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
    let mut layer_of: BTreeMap<String, String> = BTreeMap::new();
    let base_name = c.base.clone().unwrap_or_else(|| ROOT_LAYER.to_owned());
    // The common layer keeps everything (top-level files, `secrets/`), apart from the
    // overlay folders when it is the root.
    for (path, bytes) in under(root, c.base.as_deref()) {
        if c.base.is_none()
            && c.roots
                .iter()
                .any(|r| path.split('/').next() == Some(r.as_str()))
        {
            continue;
        }
        if let Some((app, _)) = path.split_once('/') {
            layer_of.insert(app.to_owned(), base_name.clone());
        }
        files.insert(path.to_owned(), Arc::clone(bytes));
    }
    for layer in &c.layers {
        let mut apps: BTreeMap<&str, AppFiles<'_>> = BTreeMap::new();
        for (path, bytes) in under(root, Some(layer)) {
            if let Some((app, rel)) = path.split_once('/')
                && !app.starts_with('.')
            {
                apps.entry(app).or_default().push((rel, bytes));
            }
        }
        for (app, app_files) in apps {
            let prefix = format!("{app}/");
            files.retain(|k, _| !k.starts_with(&prefix));
            layer_of.remove(app);
            if !is_enabled(&app_files) {
                continue;
            }
            for (rel, bytes) in app_files {
                files.insert(format!("{app}/{rel}"), Arc::clone(bytes));
            }
            layer_of.insert(app.to_owned(), layer.clone());
        }
    }
    let listing: String = layer_of
        .iter()
        .map(|(app, layer)| format!("{app}\t{layer}\n"))
        .collect();
    files.insert(LAYERS_FILE.to_owned(), Arc::from(listing.into_bytes()));
    Snapshot {
        revision: format!("{}+{}", root.revision, c.id()),
        files,
    }
}

/// One app folder's files in a layer: (path inside the folder, bytes).
type AppFiles<'a> = Vec<(&'a str, &'a Arc<[u8]>)>;

/// Each app's layer, as recorded by [`compose`]; empty for a snapshot without overlays.
pub fn layers_of(snapshot: &Snapshot) -> BTreeMap<String, String> {
    let Some(bytes) = snapshot.files.get(LAYERS_FILE) else {
        return BTreeMap::new();
    };
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, l)| (a.to_owned(), l.to_owned()))
        .collect()
}

/// The files below `folder` (all files for `None`), with paths relative to it.
fn under<'a>(
    root: &'a Snapshot,
    folder: Option<&'a str>,
) -> impl Iterator<Item = (&'a str, &'a Arc<[u8]>)> + 'a {
    root.files.iter().filter_map(move |(k, v)| match folder {
        None => Some((k.as_str(), v)),
        Some(f) => k
            .strip_prefix(f)
            .and_then(|r| r.strip_prefix('/'))
            .map(|r| (r, v)),
    })
}

/// False when the app's `leger.toml` says `enabled = false`. A `leger.toml` that does
/// not parse keeps the app, so `assemble` reports the error instead of the app
/// silently vanishing.
fn is_enabled(app_files: &AppFiles<'_>) -> bool {
    app_files
        .iter()
        .find(|(rel, _)| *rel == "leger.toml")
        .and_then(|(_, b)| std::str::from_utf8(b).ok())
        .and_then(|t| AppConfig::from_toml_str(t).ok())
        .is_none_or(|c| c.is_enabled())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            revision: "abc".into(),
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), Arc::from(v.as_bytes())))
                .collect(),
        }
    }

    fn templates() -> Vec<String> {
        vec!["groups/{group}/apps".into(), "hosts/{host}/apps".into()]
    }

    fn keys(s: &Snapshot) -> Vec<&str> {
        s.files
            .keys()
            .map(String::as_str)
            .filter(|k| *k != LAYERS_FILE)
            .collect()
    }

    fn tree() -> Snapshot {
        snap(&[
            ("apps/web/web.container", "common web"),
            ("apps/web/web.env", "common env"),
            ("apps/db/db.container", "common db"),
            ("groups/eu/apps/web/web.container", "eu web"),
            ("groups/eu/apps/cache/cache.container", "eu cache"),
            ("hosts/h1/apps/db/leger.toml", "enabled = false\n"),
            ("hosts/h2/apps/web/web.container", "h2 web"),
            ("secrets/x.age", "age"),
        ])
    }

    #[test]
    fn overlay_later_layers_replace_apps_whole() {
        let c = Composition::new(&templates(), Some("apps"), "h2", &["eu".into()]).unwrap();
        let s = compose(&tree(), &c);
        assert_eq!(
            keys(&s),
            [
                "cache/cache.container",
                "db/db.container",
                "web/web.container"
            ]
        );
        assert_eq!(&*s.files["web/web.container"], b"h2 web");
        let layers = layers_of(&s);
        assert_eq!(layers["web"], "hosts/h2/apps");
        assert_eq!(layers["cache"], "groups/eu/apps");
        assert_eq!(layers["db"], "apps");
    }

    #[test]
    fn overlay_enabled_false_removes_the_app() {
        let c = Composition::new(&templates(), Some("apps"), "h1", &[]).unwrap();
        let s = compose(&tree(), &c);
        assert_eq!(keys(&s), ["web/web.container", "web/web.env"]);
        assert!(!layers_of(&s).contains_key("db"));
    }

    #[test]
    fn overlay_missing_layer_is_empty() {
        let c = Composition::new(&templates(), Some("apps"), "h9", &["us".into()]).unwrap();
        let s = compose(&tree(), &c);
        assert_eq!(
            keys(&s),
            ["db/db.container", "web/web.container", "web/web.env"]
        );
    }

    #[test]
    fn overlay_root_common_layer_keeps_secrets_and_hides_overlay_folders() {
        let t = snap(&[
            ("web/web.container", "root web"),
            ("secrets/x.age", "age"),
            ("hosts/h1/apps/web/web.container", "h1 web"),
            ("hosts/h1/apps/api/api.container", "h1 api"),
        ]);
        let c = Composition::new(&["hosts/{host}/apps".into()], None, "h1", &[]).unwrap();
        let s = compose(&t, &c);
        assert_eq!(
            keys(&s),
            ["api/api.container", "secrets/x.age", "web/web.container"]
        );
        assert_eq!(layers_of(&s)["web"], "hosts/h1/apps");
    }

    #[test]
    fn overlay_revision_names_the_composition() {
        let eu = Composition::new(&templates(), Some("apps"), "h1", &["eu".into()]).unwrap();
        let us = Composition::new(&templates(), Some("apps"), "h1", &["us".into()]).unwrap();
        let a = compose(&tree(), &eu);
        let b = compose(&tree(), &us);
        assert_ne!(a.revision, b.revision);
        assert!(a.revision.starts_with("abc+o"), "{}", a.revision);
        assert_eq!(source_revision(&a.revision), "abc");
        assert_eq!(source_revision("abc"), "abc");
        assert_eq!(compose(&tree(), &eu).revision, a.revision);
        assert!(Composition::new(&[], None, "h", &[]).is_none());
    }
}
