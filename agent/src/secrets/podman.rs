//! Podman secrets through the [`Podman`] seam: the idempotent upsert and the removal,
//! with podman's failures turned into [`SecretError`]s that name the secret.
//!
//! `podman secret create --replace` fails when the secret does not exist, and plain
//! `create` fails when it does (podman#21952), so an upsert looks first and picks one; a
//! create that loses a race with another writer is retried as a replace.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{SecretError, SecretValue};
use crate::podman::{Podman, PodmanError};

pub use crate::podman::MANAGED_LABEL;

/// The secret calls of a pass.
#[derive(Debug, Clone)]
pub struct PodmanSecrets {
    podman: Arc<dyn Podman>,
}

fn err(what: &'static str, name: &str) -> impl FnOnce(PodmanError) -> SecretError {
    move |e| SecretError::Podman {
        what,
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

impl PodmanSecrets {
    /// Secret calls through `podman`.
    pub fn new(podman: Arc<dyn Podman>) -> Self {
        PodmanSecrets { podman }
    }

    /// The names of every podman secret of this user.
    pub async fn list(&self) -> Result<BTreeSet<String>, SecretError> {
        self.podman.secret_names().await.map_err(err("ls", ""))
    }

    /// Creates `name`, or replaces its value when `exists`. The value goes to podman on
    /// stdin.
    pub async fn upsert(
        &self,
        name: &str,
        value: &SecretValue,
        exists: bool,
    ) -> Result<(), SecretError> {
        if exists {
            return self
                .podman
                .secret_create(name, value.expose(), true)
                .await
                .map_err(err("replace", name));
        }
        match self.podman.secret_create(name, value.expose(), false).await {
            Ok(()) => Ok(()),
            Err(e) if self.list().await.is_ok_and(|l| l.contains(name)) => {
                tracing::debug!(secret = %name, error = %e, "create lost a race; replacing");
                self.podman
                    .secret_create(name, value.expose(), true)
                    .await
                    .map_err(err("replace", name))
            }
            Err(e) => Err(err("create", name)(e)),
        }
    }

    /// Removes `name`; a secret already gone is fine.
    pub async fn remove(&self, name: &str) -> Result<(), SecretError> {
        match self.podman.secret_remove(name).await {
            Ok(()) => Ok(()),
            Err(_) if !self.list().await?.contains(name) => Ok(()),
            Err(e) => Err(err("rm", name)(e)),
        }
    }
}
