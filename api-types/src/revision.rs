//! The one way leger shortens a revision for people, shared by legerd (journal,
//! status messages) and legerctl (status, history, revisions, `--wait`), so the same
//! revision reads the same everywhere.

use std::borrow::Cow;

/// How many characters of a commit id or digest are shown: enough to be unique in
/// practice.
pub const SHORT_LEN: usize = 12;

/// `0123456789abcdef…` → `0123456789ab`; a manifest revision `v3@sha256:<digest>` →
/// `v3@<12 digest chars>`; a dir digest `sha256:<digest>` → its first 12 chars.
pub fn short(revision: &str) -> Cow<'_, str> {
    let cut = |s: &str| -> usize {
        s.char_indices()
            .nth(SHORT_LEN)
            .map(|(i, _)| i)
            .unwrap_or(s.len())
    };
    if let Some((version, digest)) = revision.split_once("@sha256:") {
        return format!("{version}@{}", &digest[..cut(digest)]).into();
    }
    let r = revision.strip_prefix("sha256:").unwrap_or(revision);
    r[..cut(r)].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cuts_each_kind_of_revision_the_same_way() {
        assert_eq!(short("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short("v3@sha256:aabbccddeeff00112233"), "v3@aabbccddeeff");
        assert_eq!(short("sha256:aabbccddeeff00112233"), "aabbccddeeff");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééééééééééé"), "éééééééééééé");
    }
}
