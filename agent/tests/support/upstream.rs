//! An upstream repository driven with the git CLI: a bare repo that sources fetch from,
//! and a work tree that commits and pushes to it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A bare repository plus a clone to make commits in.
#[derive(Debug)]
pub struct Upstream {
    /// The bare repository sources fetch from.
    pub bare: PathBuf,
    /// The work tree that writes commits.
    pub work: PathBuf,
}

/// Runs git with a fixed identity and no user config; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=leger test",
            "-c",
            "user.email=test@leger.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Upstream {
    /// Creates `<root>/<name>.git` and a work tree `<root>/<name>-work` on branch `main`.
    pub fn new(root: &Path, name: &str) -> Self {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        git(root, &["init", "-q", "--bare", bare.to_str().unwrap()]);
        git(root, &["init", "-q", work.to_str().unwrap()]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Upstream { bare, work }
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes a file in the work tree, creating folders.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Creates a symlink in the work tree.
    pub fn symlink(&self, rel: &str, target: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// Commits everything and pushes `main`; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        self.head()
    }

    /// The work tree's HEAD commit.
    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Drops the last commit, commits a different change, and force-pushes `main`.
    pub fn rewrite_last(&self, rel: &str, content: &str) -> String {
        git(&self.work, &["reset", "-q", "--hard", "HEAD~1"]);
        self.write(rel, content);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", "rewritten"]);
        git(
            &self.work,
            &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"],
        );
        self.head()
    }

    /// Creates an annotated tag at HEAD and pushes it.
    pub fn tag(&self, name: &str) {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        git(
            &self.work,
            &["push", "-q", "origin", &format!("refs/tags/{name}")],
        );
    }
}
