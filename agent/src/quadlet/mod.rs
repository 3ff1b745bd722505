//! Quadlet files: parsing with line numbers, the key tables of podman 5.x, unit names,
//! and the references a quadlet makes to other files.
//!
//! OWNER: helper "quadlet". Interface the rest of legerd relies on:
//! - `parse(file: &str, text: &str) -> Result<QuadletFile, Vec<Diagnostic>>`
//! - `validate(&QuadletFile) -> Vec<Diagnostic>` (sections and keys known for the kind,
//!   required keys such as `Image=`/`Rootfs=`)
//! - `QuadletFile::unit_name()` (honours `ServiceName=`)
//! - `references(&QuadletFile) -> References { quadlets, files, secrets }`
//! - `generator::dry_run(generator: &Path, staging_dir: &Path, user: bool) -> Result<(), Vec<Diagnostic>>`
