//! Fetching: the source instance for the desired state in force, asked for its newest
//! snapshot on the blocking pool (gix and the manifest client block).

use std::time::Instant;

use leger_api_types::{DesiredState, SourceSpec};
use leger_config::Settings;

use super::blocking;
use crate::metrics::Metrics;
use crate::model::Snapshot;
use crate::source::SourceError;
use crate::source::dir::DirSource;
use crate::source::git::GitSource;
use crate::source::manifest::ManifestSource;

/// The source instance for the current desired state.
#[derive(Debug)]
enum ActiveSource {
    Git(Box<GitSource>),
    Dir(DirSource),
    Manifest(Box<ManifestSource>),
}

impl ActiveSource {
    fn new(spec: &SourceSpec, settings: &Settings) -> Self {
        match spec {
            SourceSpec::Git(g) => ActiveSource::Git(Box::new(GitSource::new(
                crate::overlay::whole_tree(g),
                &settings.paths.state_dir,
                settings.limits.clone(),
            ))),
            SourceSpec::Dir(d) => {
                ActiveSource::Dir(DirSource::new(d.clone(), settings.limits.clone()))
            }
            SourceSpec::Manifest(m) => ActiveSource::Manifest(Box::new(ManifestSource::new(
                m.clone(),
                &settings.paths.state_dir,
                settings.limits.clone(),
            ))),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ActiveSource::Git(_) => "git",
            ActiveSource::Dir(_) => "dir",
            ActiveSource::Manifest(_) => "manifest",
        }
    }
}

/// Keeps the source (its caches, conditional-request state) from pass to pass.
#[derive(Debug, Default)]
pub struct Fetcher {
    source: Option<ActiveSource>,
}

impl Fetcher {
    /// Forgets the source instance: the desired source changed.
    pub fn reset(&mut self) {
        self.source = None;
    }

    /// Asks the source for its newest snapshot. `applied` lets git and manifest sources
    /// refuse rewritten history and downgrades.
    pub async fn fetch(
        &mut self,
        desired: &DesiredState,
        settings: &Settings,
        metrics: &Metrics,
        applied: Option<String>,
    ) -> Result<Snapshot, SourceError> {
        let source = match self.source.take() {
            Some(s) => s,
            None => ActiveSource::new(&desired.source, settings),
        };
        let kind = source.kind();
        let t0 = Instant::now();
        // With overlays the host applies (source revision, composition): the source
        // compares against its own part, and the fetched tree is composed for this host.
        let applied = applied.map(|a| crate::overlay::source_revision(&a).to_owned());
        let composition = crate::overlay::Composition::for_source(desired, &settings.fleet);
        let _op = crate::activity::begin(format!("fetch of the {kind} source"));
        let (source, result) = blocking::run(move || {
            let mut source = source;
            let result = match &mut source {
                ActiveSource::Git(g) => g.fetch(applied.as_deref()).map(|f| f.snapshot),
                ActiveSource::Dir(d) => d.fetch(),
                ActiveSource::Manifest(m) => m.fetch(applied.as_deref()).map(|f| f.snapshot),
            };
            let result = match &composition {
                Some(c) => result.map(|root| crate::overlay::compose(&root, c)),
                None => result,
            };
            (source, result)
        })
        .await;
        metrics.record_fetch(kind, result.is_ok(), t0.elapsed());
        self.source = Some(source);
        result
    }
}
