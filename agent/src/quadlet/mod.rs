//! Quadlet files: parsing with line numbers, the key tables of every podman release, unit names,
//! and the references a quadlet makes to other files.
//!
//! legerd checks quadlets itself, before anything is installed, so that a bad revision
//! is refused whole with every problem listed by `file:line`. The generator's own dry
//! run ([`generator::dry_run`]) is a second opinion when podman is installed.
//!
//! - [`parse`] reads the INI text ([`ini`]).
//! - [`validate`] checks sections, keys ([`keys`]) and required keys.
//! - [`QuadletFile::unit_name`] gives the unit quadlet will generate.
//! - [`references`] lists the quadlets, companion files and secrets a file uses.

use std::fmt;

pub mod bundle;
pub mod generator;
pub mod ini;
pub mod keys;
mod podman_tables;
pub mod references;
pub mod target;
mod validate;
mod values;
pub mod version;

pub use ini::{Entry, QuadletFile, Section, parse};
pub use keys::{Basis, KeyTable, Support};
pub use references::{FileRef, References, references};
pub use target::{Installed, Target};
pub use validate::validate;
pub use version::{PodmanVersion, VersionError};

/// One problem found in a quadlet or in the tree, pointing at the file (and line) to
/// fix. Shown as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file, relative to the source root (`web/web.container`).
    pub file: String,
    /// 1-based line, when the problem sits on one.
    pub line: Option<u32>,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl Diagnostic {
    /// Builds a diagnostic.
    pub fn new(file: impl Into<String>, line: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}
