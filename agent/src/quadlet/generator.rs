//! A second opinion from podman's own quadlet generator, run in dry-run mode on a
//! staging copy of the tree before anything is installed.
//!
//! What podman 5.4.2's generator does (seen on the test bed):
//! - `QUADLET_UNIT_DIRS=<dir>` is scanned recursively, so app sub-folders are found.
//! - Files are known by base name; a second file with the same base name in another
//!   folder is skipped silently (the assembler refuses such trees itself).
//! - It exits 1 when a file fails. All failures come in one log message whose first
//!   line carries the `quadlet-generator[PID]: ` prefix and whose other lines do not:
//!   `converting "bad.container": unsupported key 'NotAKey' in group 'Container' in /dir/app/bad.container`,
//!   `converting "x.container": no Image or Rootfs key specified`,
//!   `error loading "/dir/app/x.container", file contains line 1: “garbage” which is not a key-value pair, group, or comment`.
//! - `Loading source unit file ...` and `Warning: ...` lines are informational.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Diagnostic;
use crate::command::{CommandLine, Runner};

/// Why the dry run gave no verdict on the revision: the generator could not run, or it
/// ran past its time limit and was killed. Unlike a refusal, this says nothing about
/// the revision, so it must not be rejected for it; the pass is retried instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GeneratorUnavailable(pub String);

/// What the dry run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunError {
    /// The generator refused files of the revision.
    Refused(Vec<Diagnostic>),
    /// The generator gave no verdict.
    Unavailable(GeneratorUnavailable),
}

/// Runs `QUADLET_UNIT_DIRS=<staging_dir> <generator> [-user] -dryrun -no-kmsg-log` and
/// turns its failures into diagnostics, with files named relative to `staging_dir`.
/// The generator is killed (with anything it forked) after `timeout`.
///
/// **When `generator` does not exist this returns `Ok(())`**: podman may not be
/// installed where legerd validates (a CI box, a host without podman yet), and
/// validation then relies on legerd's own tables ([`super::validate`]) alone.
///
/// Blocking: call it from a blocking task.
pub fn dry_run(
    generator: &Path,
    staging_dir: &Path,
    user: bool,
    timeout: Duration,
) -> Result<(), DryRunError> {
    if !generator.exists() {
        return Ok(());
    }
    let mut cmd = CommandLine::new(generator);
    if user {
        cmd = cmd.arg("-user");
    }
    let cmd = cmd
        .args(["-dryrun", "-no-kmsg-log"])
        .env("QUADLET_UNIT_DIRS", staging_dir);
    let output = match Runner::new(timeout).run_blocking(&cmd) {
        Ok(output) => output,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => {
            return Err(DryRunError::Unavailable(GeneratorUnavailable(format!(
                "podman's quadlet generator gave no verdict: {e}"
            ))));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let names = StagedNames::scan(staging_dir);
    let mut diagnostics = parse_stderr(&stderr, staging_dir, &names);
    if !output.status.success() && diagnostics.is_empty() {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        diagnostics.push(Diagnostic::new(
            generator.display().to_string(),
            None,
            format!(
                "the quadlet generator failed ({}) without naming a file: {}",
                output.status,
                last.map(strip_prefix).unwrap_or("no output")
            ),
        ));
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(DryRunError::Refused(diagnostics))
    }
}

/// Maps the base names the generator prints back to paths under the staging dir.
#[derive(Debug, Default)]
pub(crate) struct StagedNames(Vec<String>);

impl StagedNames {
    fn scan(root: &Path) -> Self {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
                continue;
            };
            for entry in entries.flatten() {
                let rel = rel.join(entry.file_name());
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(rel),
                    Ok(_) => out.push(rel.to_string_lossy().into_owned()),
                    Err(_) => {}
                }
            }
        }
        out.sort();
        StagedNames(out)
    }

    /// The staged path of `base`, when exactly one file has that base name.
    fn find(&self, base: &str) -> Option<&str> {
        let mut hits = self.0.iter().filter(|p| super::ini::base_name(p) == base);
        match (hits.next(), hits.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

fn strip_prefix(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("quadlet-generator[")
        && let Some((pid, msg)) = rest.split_once("]: ")
        && pid.bytes().all(|b| b.is_ascii_digit())
    {
        return msg;
    }
    line
}

/// Turns the generator's stderr into diagnostics; lines that are not failures are
/// skipped.
pub(crate) fn parse_stderr(
    stderr: &str,
    staging_dir: &Path,
    names: &StagedNames,
) -> Vec<Diagnostic> {
    let staging = staging_dir.to_string_lossy();
    let relative = |path: &str| -> String {
        path.strip_prefix(staging.as_ref())
            .map(|p| p.trim_start_matches('/').to_string())
            .unwrap_or_else(|| path.to_string())
    };
    let mut out = Vec::new();
    for line in stderr.lines().map(strip_prefix) {
        if let Some(rest) = line.strip_prefix("converting \"") {
            let Some((base, message)) = rest.split_once("\": ") else {
                continue;
            };
            // `... in /staging/app/x.container` names the file exactly; drop it from
            // the message so staging paths do not leak into what users see.
            let (message, file) = match message.rsplit_once(" in ") {
                Some((msg, path)) if path.starts_with(staging.as_ref()) => {
                    (msg.to_string(), relative(path))
                }
                _ => (
                    message.to_string(),
                    names.find(base).unwrap_or(base).to_string(),
                ),
            };
            out.push(Diagnostic::new(file, None, message));
        } else if let Some(rest) = line.strip_prefix("error loading \"") {
            let Some((path, message)) = rest.split_once("\", ") else {
                continue;
            };
            let (line_no, message) = split_line_number(message);
            out.push(Diagnostic::new(relative(path), line_no, message));
        }
    }
    out
}

/// `file contains line 3: “x” which is ...` → (Some(3), `“x” which is ...`).
fn split_line_number(message: &str) -> (Option<u32>, String) {
    if let Some(rest) = message.strip_prefix("file contains line ")
        && let Some((num, msg)) = rest.split_once(": ")
        && let Ok(n) = num.parse()
    {
        return (Some(n), msg.to_string());
    }
    (None, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous: the generator answers in milliseconds; this only bounds a broken one.
    const T: Duration = Duration::from_secs(60);

    /// Real stderr of podman 5.4.2's generator on the test bed (staging dir
    /// `/var/tmp/qhelper/sc`, apps `app1` and `app2`).
    const REAL_STDERR: &str = "quadlet-generator[107]: Loading source unit file /var/tmp/qhelper/sc/app1/bad.container
quadlet-generator[107]: Loading source unit file /var/tmp/qhelper/sc/app1/noimage.container
quadlet-generator[107]: Warning: container-Image.container specifies the image \"x\" which not a fully qualified image name. This is not ideal for performance and security reasons. See the podman-pull manpage discussion of short-name-aliases.conf for details.
quadlet-generator[107]: error loading \"/var/tmp/qhelper/sc/app2/garbage.container\", file contains line 1: “garbage line” which is not a key-value pair, group, or comment
converting \"bad.container\": unsupported key 'NotAKey' in group 'Container' in /var/tmp/qhelper/sc/app1/bad.container
converting \"noimage.container\": no Image or Rootfs key specified
converting \"missingvol.container\": requested Quadlet source missing.volume was not found
";

    #[test]
    fn parse_stderr_reads_real_generator_output() {
        let names = StagedNames(vec![
            "app1/bad.container".into(),
            "app1/noimage.container".into(),
            "app2/missingvol.container".into(),
        ]);
        let d = parse_stderr(REAL_STDERR, Path::new("/var/tmp/qhelper/sc"), &names);
        let shown: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "app2/garbage.container:1: “garbage line” which is not a key-value pair, group, or comment",
                "app1/bad.container: unsupported key 'NotAKey' in group 'Container'",
                "app1/noimage.container: no Image or Rootfs key specified",
                "app2/missingvol.container: requested Quadlet source missing.volume was not found",
            ]
        );
    }

    #[test]
    fn parse_stderr_keeps_base_name_when_ambiguous() {
        let names = StagedNames(vec!["a/x.kube".into(), "b/x.kube".into()]);
        let d = parse_stderr(
            "quadlet-generator[112]: converting \"x.kube\": no Yaml key specified\n",
            Path::new("/s"),
            &names,
        );
        assert_eq!(
            d,
            vec![Diagnostic::new("x.kube", None, "no Yaml key specified")]
        );
    }

    /// podman's generator: `LEGER_QUADLET_GENERATOR`, else the test bed's copy (it runs
    /// on the host too), else the system one.
    fn real_generator() -> Option<PathBuf> {
        let candidates = [
            std::env::var_os("LEGER_QUADLET_GENERATOR").map(PathBuf::from),
            std::env::var_os("LEGER_TESTBED_ROOT")
                .map(|r| PathBuf::from(r).join("usr/libexec/podman/quadlet")),
            Some(PathBuf::from(
                "/var/tmp/leger-testbed/run-legertb/root/usr/libexec/podman/quadlet",
            )),
            Some(PathBuf::from("/usr/libexec/podman/quadlet")),
        ];
        candidates.into_iter().flatten().find(|p| p.exists())
    }

    #[test]
    fn dry_run_reports_real_generator_failures() {
        let Some(generator) = real_generator() else {
            eprintln!("skipped: no podman quadlet generator; set LEGER_QUADLET_GENERATOR");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("app1")).unwrap();
        std::fs::create_dir_all(root.join("app2")).unwrap();
        let good = "[Container]\nImage=localhost/busybox:latest\n";
        std::fs::write(root.join("app1/ok.container"), good).unwrap();
        std::fs::write(root.join("app1/data.volume"), "[Volume]\n").unwrap();
        assert_eq!(dry_run(&generator, root, false, T), Ok(()));

        std::fs::write(
            root.join("app1/bad.container"),
            "[Container]\nImage=localhost/busybox:latest\nNotAKey=1\n",
        )
        .unwrap();
        std::fs::write(
            root.join("app2/noimage.container"),
            "[Container]\nExec=true\n",
        )
        .unwrap();
        let Err(DryRunError::Refused(mut d)) = dry_run(&generator, root, false, T) else {
            panic!("the generator should refuse the files");
        };
        d.sort();
        assert_eq!(
            d,
            vec![
                Diagnostic::new(
                    "app1/bad.container",
                    None,
                    "unsupported key 'NotAKey' in group 'Container'"
                ),
                Diagnostic::new(
                    "app2/noimage.container",
                    None,
                    "no Image or Rootfs key specified"
                ),
            ]
        );
    }

    #[test]
    fn dry_run_without_generator_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            dry_run(&dir.path().join("no-such-generator"), dir.path(), false, T),
            Ok(())
        );
    }

    #[test]
    fn staged_names_scan_finds_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app/sub")).unwrap();
        std::fs::write(dir.path().join("app/web.container"), "").unwrap();
        std::fs::write(dir.path().join("app/sub/x.volume"), "").unwrap();
        let names = StagedNames::scan(dir.path());
        assert_eq!(names.find("x.volume"), Some("app/sub/x.volume"));
        assert_eq!(names.find("web.container"), Some("app/web.container"));
        assert_eq!(names.find("missing"), None);
    }
}
