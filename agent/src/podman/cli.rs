//! [`CliPodman`]: the [`Podman`] seam over the `podman` and `journalctl` programs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{JournalScope, MANAGED_LABEL, Podman, PodmanError};
use crate::command::{CommandLine, Output, Runner};

/// The podman and journalctl command-line programs, each call bounded by a [`Runner`].
#[derive(Debug, Clone)]
pub struct CliPodman {
    /// `podman`, or a path to it.
    podman: PathBuf,
    /// `journalctl`, or a path to it.
    journalctl: PathBuf,
    /// The time limit of every call.
    runner: Runner,
}

impl CliPodman {
    /// `podman` and `journalctl` from `PATH`, each call limited by `runner`.
    pub fn new(runner: Runner) -> Self {
        CliPodman {
            podman: PathBuf::from("podman"),
            journalctl: PathBuf::from("journalctl"),
            runner,
        }
    }

    /// Uses `program` instead of `podman` from `PATH`.
    pub fn with_podman_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.podman = program.into();
        self
    }

    /// Uses `program` instead of `journalctl` from `PATH`.
    pub fn with_journalctl_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.journalctl = program.into();
        self
    }

    fn podman(&self) -> CommandLine {
        CommandLine::new(&self.podman)
    }

    /// `podman secret ls` listing names only.
    pub fn secret_names_command(&self) -> CommandLine {
        self.podman()
            .args(["secret", "ls", "--noheading", "--format", "{{.Name}}"])
    }

    /// `podman secret create`, value on stdin (`-`).
    pub fn secret_create_command(&self, name: &str, replace: bool) -> CommandLine {
        let c = self.podman().args(["secret", "create"]);
        let c = if replace { c.arg("--replace") } else { c };
        c.args(["--label", MANAGED_LABEL, name, "-"])
    }

    /// `podman secret rm`.
    pub fn secret_remove_command(&self, name: &str) -> CommandLine {
        self.podman().args(["secret", "rm", name])
    }

    /// `podman volume <verb> NAME`.
    pub fn volume_command(&self, verb: &str, name: &str) -> CommandLine {
        self.podman().args(["volume", verb, name])
    }

    /// `podman volume export NAME --output FILE`.
    pub fn volume_export_command(&self, name: &str, file: &Path) -> CommandLine {
        self.volume_command("export", name)
            .arg("--output")
            .arg(file)
    }

    /// `podman volume import NAME FILE`.
    pub fn volume_import_command(&self, name: &str, file: &Path) -> CommandLine {
        self.volume_command("import", name).arg(file)
    }

    /// `podman volume inspect NAME --format {{.Mountpoint}}`.
    pub fn volume_mountpoint_command(&self, name: &str) -> CommandLine {
        self.volume_command("inspect", name)
            .arg("--format")
            .arg("{{.Mountpoint}}")
    }

    /// `podman network <verb> NAME`.
    pub fn network_command(&self, verb: &str, name: &str) -> CommandLine {
        self.podman().args(["network", verb, name])
    }

    /// The containers attached to a network, one line each: name, unit label, infra.
    pub fn network_users_command(&self, name: &str) -> CommandLine {
        self.podman().args([
            "ps",
            "--all",
            "--filter",
            &format!("network={name}"),
            "--format",
            "{{.Names}}\t{{index .Labels \"PODMAN_SYSTEMD_UNIT\"}}\t{{.IsInfra}}",
        ])
    }

    /// `podman inspect` of a container's health status.
    pub fn container_health_command(&self, container: &str) -> CommandLine {
        self.podman().args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Health.Status}}",
            container,
        ])
    }

    /// `journalctl` for the last lines of one unit.
    pub fn unit_journal_command(
        &self,
        unit: &str,
        scope: JournalScope,
        lines: usize,
    ) -> CommandLine {
        let flag = match scope {
            JournalScope::System => "--unit",
            JournalScope::User => "--user-unit",
        };
        CommandLine::new(&self.journalctl)
            .args([flag, unit, "-n"])
            .arg(lines.to_string())
            .args(["-o", "cat", "--no-pager", "-q"])
    }

    /// Runs `cmd`; a non-zero exit is [`PodmanError::Failed`].
    async fn ok(&self, cmd: CommandLine, stdin: Option<&[u8]>) -> Result<Output, PodmanError> {
        let out = self.runner.run(&cmd, stdin).await?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(failed(&cmd, &out))
        }
    }

    /// Runs an `exists` command: exit 0 is true, 1 is false, anything else an error.
    async fn exists(&self, cmd: CommandLine) -> Result<bool, PodmanError> {
        let out = self.runner.run(&cmd, None).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failed(&cmd, &out)),
        }
    }
}

fn failed(cmd: &CommandLine, out: &Output) -> PodmanError {
    PodmanError::Failed {
        command: cmd.display(),
        status: out.status.to_string(),
        stderr: out.stderr_summary(),
    }
}

impl Podman for CliPodman {
    fn secret_names(&self) -> BoxFuture<'_, Result<BTreeSet<String>, PodmanError>> {
        async move {
            let out = self.ok(self.secret_names_command(), None).await?;
            Ok(out
                .stdout_text()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect())
        }
        .boxed()
    }

    fn secret_create<'a>(
        &'a self,
        name: &'a str,
        value: &'a [u8],
        replace: bool,
    ) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.secret_create_command(name, replace), Some(value))
                .await
                .map(drop)
        }
        .boxed()
    }

    fn secret_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.secret_remove_command(name), None)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn volume_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, PodmanError>> {
        self.exists(self.volume_command("exists", name)).boxed()
    }

    fn volume_created<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, PodmanError>> {
        async move {
            if !self.exists(self.volume_command("exists", name)).await? {
                return Ok(None);
            }
            let cmd = self
                .podman()
                .args(["volume", "inspect", "--format", "{{.CreatedAt}}", name]);
            let out = self.ok(cmd, None).await?;
            Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
        }
        .boxed()
    }

    fn volume_create<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.volume_command("create", name), None)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn volume_export<'a>(
        &'a self,
        name: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.volume_export_command(name, file), None)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn volume_import<'a>(
        &'a self,
        name: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.volume_import_command(name, file), None)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn volume_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.volume_command("rm", name), None)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn volume_mountpoint<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::path::PathBuf>, PodmanError>> {
        async move {
            let out = self.ok(self.volume_mountpoint_command(name), None).await?;
            let path = out.stdout_text().trim().to_owned();
            Ok((!path.is_empty()).then(|| std::path::PathBuf::from(path)))
        }
        .boxed()
    }

    fn network_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, PodmanError>> {
        self.exists(self.network_command("exists", name)).boxed()
    }

    fn network_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        async move {
            self.ok(self.network_command("rm", name), None)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn network_users<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<super::NetworkUser>, PodmanError>> {
        async move {
            let out = self.ok(self.network_users_command(name), None).await?;
            Ok(parse_network_users(&String::from_utf8_lossy(&out.stdout)))
        }
        .boxed()
    }

    fn container_health<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, PodmanError>> {
        async move {
            let out = self
                .runner
                .run(&self.container_health_command(container), None)
                .await?;
            // A container that does not exist yet (quadlet is still creating it) is
            // "cannot say", not an error: the gate keeps looking until its own timeout.
            Ok(out
                .status
                .success()
                .then(|| out.stdout_text().trim().to_owned()))
        }
        .boxed()
    }

    fn unit_journal<'a>(
        &'a self,
        unit: &'a str,
        scope: JournalScope,
        lines: usize,
    ) -> BoxFuture<'a, Result<String, PodmanError>> {
        async move {
            let out = self
                .ok(self.unit_journal_command(unit, scope, lines), None)
                .await?;
            Ok(out.stdout_text())
        }
        .boxed()
    }
}

/// Reads `podman ps` lines of [`CliPodman::network_users_command`]: podman prints
/// `<no value>` for a missing label.
fn parse_network_users(text: &str) -> Vec<super::NetworkUser> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split('\t');
            let container = parts.next().unwrap_or_default().trim().to_owned();
            let unit = parts
                .next()
                .map(str::trim)
                .filter(|u| !u.is_empty() && *u != "<no value>")
                .map(ToOwned::to_owned);
            let infra = parts.next().is_some_and(|i| i.trim() == "true");
            super::NetworkUser {
                container,
                unit,
                infra,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parse_network_users_reads_names_units_and_infra() {
        let users = parse_network_users(
            "web\tweb.service\tfalse\noutsider\t<no value>\tfalse\nabc-infra\t\ttrue\n\n",
        );
        let user = |c: &str, u: Option<&str>, infra| super::super::NetworkUser {
            container: c.into(),
            unit: u.map(Into::into),
            infra,
        };
        assert_eq!(
            users,
            vec![
                user("web", Some("web.service"), false),
                user("outsider", None, false),
                user("abc-infra", None, true),
            ]
        );
        assert_eq!(
            cli().network_users_command("systemd-front").display(),
            "podman ps --all --filter network=systemd-front --format {{.Names}}\t{{index .Labels \"PODMAN_SYSTEMD_UNIT\"}}\t{{.IsInfra}}"
        );
    }

    fn cli() -> CliPodman {
        CliPodman::new(Runner::new(Duration::from_secs(5)))
    }

    #[test]
    fn cli_podman_builds_secret_commands_with_the_value_on_stdin() {
        let p = cli();
        assert_eq!(
            p.secret_names_command().display(),
            "podman secret ls --noheading --format {{.Name}}"
        );
        assert_eq!(
            p.secret_create_command("db-pass", false).display(),
            "podman secret create --label io.leger.managed=true db-pass -"
        );
        assert_eq!(
            p.secret_create_command("db-pass", true).display(),
            "podman secret create --replace --label io.leger.managed=true db-pass -"
        );
        assert_eq!(
            p.secret_remove_command("db-pass").display(),
            "podman secret rm db-pass"
        );
    }

    #[test]
    fn cli_podman_builds_volume_and_network_commands() {
        let p = cli().with_podman_program("/usr/local/bin/podman");
        assert_eq!(
            p.volume_export_command("db", Path::new("/b/db.tar"))
                .display(),
            "/usr/local/bin/podman volume export db --output /b/db.tar"
        );
        assert_eq!(
            p.volume_import_command("db", Path::new("/b/db.tar"))
                .display(),
            "/usr/local/bin/podman volume import db /b/db.tar"
        );
        assert_eq!(
            p.volume_mountpoint_command("db").display(),
            "/usr/local/bin/podman volume inspect db --format {{.Mountpoint}}"
        );
        for verb in ["exists", "create", "rm"] {
            assert_eq!(
                p.volume_command(verb, "db").display(),
                format!("/usr/local/bin/podman volume {verb} db")
            );
            if verb != "create" {
                assert_eq!(
                    p.network_command(verb, "net").display(),
                    format!("/usr/local/bin/podman network {verb} net")
                );
            }
        }
        assert_eq!(
            p.container_health_command("systemd-web").display(),
            "/usr/local/bin/podman inspect --type container --format {{.State.Health.Status}} systemd-web"
        );
    }

    #[test]
    fn cli_podman_builds_journal_reads_per_scope() {
        let p = cli().with_journalctl_program("/bin/journalctl");
        assert_eq!(
            p.unit_journal_command("web.service", JournalScope::System, 32)
                .display(),
            "/bin/journalctl --unit web.service -n 32 -o cat --no-pager -q"
        );
        assert_eq!(
            p.unit_journal_command("web.service", JournalScope::User, 8)
                .display(),
            "/bin/journalctl --user-unit web.service -n 8 -o cat --no-pager -q"
        );
    }
}
