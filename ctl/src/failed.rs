//! `legerctl pin` and `approve` refuse a revision that already failed its health gate,
//! unless given `--force`: legerd would only hold the last good revision and report the
//! pin as failed. With `--force`, legerctl first asks legerd to forget the failure
//! (`POST /v1/revisions/REV/retry`), so legerd tries the revision once more.

use leger_api_types::RevisionInfo;

/// What to do about `revision` before pinning or approving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not known as failed: go ahead.
    Proceed,
    /// Failed, and `--force` was given: forget the failure, then go ahead.
    Retry,
}

/// Decides from legerd's revision list. `verb` is `pin` or `approve`, for the message.
pub fn check(
    revisions: &[RevisionInfo],
    revision: &str,
    force: bool,
    verb: &str,
) -> Result<Verdict, String> {
    let Some(r) = revisions
        .iter()
        .find(|r| r.revision == revision && r.state == "failed")
    else {
        return Ok(Verdict::Proceed);
    };
    if force {
        return Ok(Verdict::Retry);
    }
    Err(format!(
        "revision {revision} failed its health gate{}; legerd would keep the host on its last good revision. \
         Pick another revision (`legerctl revisions`), or try this one again with `legerctl {verb} {revision} --force`",
        r.error
            .as_deref()
            .map(|e| format!(" ({})", e.lines().next().unwrap_or(e)))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(revision: &str, state: &str) -> RevisionInfo {
        RevisionInfo {
            revision: revision.into(),
            state: state.into(),
            error: Some("web.service of app web unit failed (failed)".into()),
            updated_at: String::new(),
            stored: true,
        }
    }

    #[test]
    fn failed_revision_is_refused_unless_forced() {
        let list = [info("a", "applied"), info("b", "failed")];
        assert_eq!(check(&list, "a", false, "pin"), Ok(Verdict::Proceed));
        assert_eq!(check(&list, "c", false, "pin"), Ok(Verdict::Proceed));
        let e = check(&list, "b", false, "pin").unwrap_err();
        assert!(
            e.contains("legerctl pin b --force") && e.contains("web.service"),
            "{e}"
        );
        assert_eq!(check(&list, "b", true, "approve"), Ok(Verdict::Retry));
    }
}
