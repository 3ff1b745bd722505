//! End-to-end: `--wait` on every command that changes the host, as an operator runs
//! it: exit 0 once the resulting revision is applied (or staged, or already so), 1
//! when it failed or was rolled back, and a message saying what happened.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::Testbed;

const WEB: &str = "apps/web/web.container";

/// Runs `legerctl ARGS` inside and checks its exit code; returns stdout and stderr.
fn waited(tb: &Testbed, args: &[&str], code: i32) -> Result<String> {
    let (got, out, err) = legerctl_out(tb, args)?;
    assert_eq!(got, code, "legerctl {args:?}:\n{out}\n{err}");
    Ok(format!("{out}{err}"))
}

#[test]
fn wait_exit_codes_on_every_changing_command() -> Result<()> {
    let tb = Testbed::boot("e2e-wait")?;
    let (fleet, v1, _) = web_converged(&tb)?;

    // set-policy: staged mode, nothing new to apply.
    let text = waited(&tb, &["set-policy", "--mode", "staged", "--wait=120s"], 0)?;
    assert!(text.contains("mode staged"), "{text}");

    // reconcile in staged mode: the new revision is staged, nothing applied (exit 0).
    let v2 = fleet.commit(&[(WEB, &container("web", "web v2"))], &[], "v2")?;
    let text = waited(&tb, &["reconcile", "--wait=120s"], 0)?;
    assert!(text.contains("staged"), "says it was staged: {text}");
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v1.as_str()));

    // approve: applied.
    let text = waited(&tb, &["approve", "--wait=120s"], 0)?;
    assert!(text.contains("applied"), "{text}");
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v2.as_str()));

    // rollback: back to v1, pinned, applied.
    let text = waited(&tb, &["rollback", "--wait=120s"], 0)?;
    assert!(
        text.contains("rolling back to") && text.contains("applied"),
        "{text}"
    );
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v1.as_str()));

    // pin: v2 again, applied.
    let text = waited(&tb, &["pin", &v2, "--wait=120s"], 0)?;
    assert!(text.contains("pinned at"), "{text}");
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v2.as_str()));
    legerctl(&tb, &["unpin"])?;

    // set-policy back to auto; then a revision whose unit crashes: rolled back, exit 1.
    waited(&tb, &["set-policy", "--mode", "auto", "--wait=120s"], 0)?;
    let crash = "[Container]\nContainerName=web\nImage=localhost/busybox:latest\nNetwork=none\n\
                 Exec=/bin/sh -c 'echo about to crash; exit 3'\n";
    fleet.commit(&[(WEB, crash)], &[], "crash")?;
    let text = waited(&tb, &["reconcile", "--wait=120s"], 1)?;
    assert!(text.contains("rolled back"), "{text}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 500),
        "one-line messages: {text}"
    );
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v2.as_str()));

    // secrets set: stored, and the pass that follows judged like the others.
    let out = tb.exec(&[
        "sh",
        "-c",
        "printf %s s3cr3t-value | /opt/leger/legerctl secrets set tok --wait=120s",
    ])?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The crashing revision is still the source's head and known bad: held back (1).
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(!text.contains("s3cr3t-value"), "{text}");
    Ok(())
}
