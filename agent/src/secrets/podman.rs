//! Podman secrets through the podman CLI.
//!
//! The CLI rather than libpod's REST socket: legerd then needs no `podman.socket` unit
//! enabled (in system or user mode), the CLI is what operators use to check the result,
//! and its one caveat is easy to meet: values go on **stdin** (`podman secret create
//! NAME -`), never on the command line where `ps` would show them.
//!
//! `podman secret create --replace` fails when the secret does not exist, and plain
//! `create` fails when it does, so an upsert looks first and picks one; a create that
//! loses a race with another writer is retried as a replace.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{SecretError, SecretValue};

/// The label legerd puts on secrets it creates, so operators can tell them apart.
pub const MANAGED_LABEL: &str = "io.leger.managed=true";

/// The podman CLI.
#[derive(Debug, Clone)]
pub struct Podman {
    program: PathBuf,
}

impl Default for Podman {
    fn default() -> Self {
        Podman {
            program: PathBuf::from("podman"),
        }
    }
}

impl Podman {
    /// podman at `program` (a path or a name on PATH).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Podman {
            program: program.into(),
        }
    }

    async fn run(
        &self,
        what: &'static str,
        name: &str,
        args: &[&str],
        stdin: Option<&SecretValue>,
    ) -> Result<String, SecretError> {
        let fail = |reason: String| SecretError::Podman {
            what,
            name: name.to_owned(),
            reason,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.program.display())))?;
        if let Some(v) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(v.expose())
                .await
                .map_err(|e| fail(format!("cannot write to podman's stdin: {e}")))?;
            drop(pipe);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail(format!("waiting for podman: {e}")))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(fail(format!(
                "{}: {}",
                out.status,
                err.trim().chars().take(500).collect::<String>()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The names of every podman secret of this user.
    pub async fn list(&self) -> Result<BTreeSet<String>, SecretError> {
        let out = self
            .run(
                "ls",
                "",
                &["secret", "ls", "--noheading", "--format", "{{.Name}}"],
                None,
            )
            .await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Creates `name`, or replaces its value when `exists`.
    pub async fn upsert(
        &self,
        name: &str,
        value: &SecretValue,
        exists: bool,
    ) -> Result<(), SecretError> {
        let create = ["secret", "create", "--label", MANAGED_LABEL, name, "-"];
        let replace = [
            "secret",
            "create",
            "--replace",
            "--label",
            MANAGED_LABEL,
            name,
            "-",
        ];
        if exists {
            return self
                .run("replace", name, &replace, Some(value))
                .await
                .map(drop);
        }
        match self.run("create", name, &create, Some(value)).await {
            Ok(_) => Ok(()),
            Err(e) if self.list().await.is_ok_and(|l| l.contains(name)) => {
                tracing::debug!(secret = %name, error = %e, "create lost a race; replacing");
                self.run("replace", name, &replace, Some(value))
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes `name`; a secret already gone is fine.
    pub async fn remove(&self, name: &str) -> Result<(), SecretError> {
        match self.run("rm", name, &["secret", "rm", name], None).await {
            Ok(_) => Ok(()),
            Err(_) if !self.list().await?.contains(name) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
