//! Builds a validated [`DesiredTree`](crate::model::DesiredTree) from a fetched
//! [`Snapshot`](crate::model::Snapshot): groups files into apps, parses and validates
//! every quadlet, picks the companions they reference, and refuses the revision whole
//! on any error.
//!
//! OWNER: helper "quadlet". Interface:
//! `assemble(snapshot: &Snapshot, limits: &leger_config::Limits) -> Result<DesiredTree, ValidationErrors>`
