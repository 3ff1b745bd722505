//! One formatter for "this long message as one line", shared by legerd (condition
//! messages) and legerctl (status and history tables), so both shorten alike.
//!
//! A failed unit's message ends in its journal tail (podman's pull log can be 40
//! lines). The one-line form keeps the summary and the one log line that tells what
//! went wrong; the whole text stays in the pass record (`legerctl history show ID`,
//! `legerctl status --details`).

/// Where a message's journal tail starts (`pass::run` writes it).
pub const LOG_TAIL: &str = "; last log lines:";

/// A log line is cut to this many characters in the one-line form.
pub const MAX_DETAIL: usize = 160;

/// `text` as one line: its first line (the summary), the first detail line (cut to
/// [`MAX_DETAIL`]) and how many more there are; from a journal tail only its most
/// telling line.
pub fn one_line(text: &str) -> String {
    let (head, tail) = match text.find(LOG_TAIL) {
        Some(i) => (&text[..i], Some(&text[i + LOG_TAIL.len()..])),
        None => (text, None),
    };
    let mut lines = head.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut out = lines.next().unwrap_or_default().to_owned();
    if let Some(detail) = lines.next() {
        out.push_str(if out.ends_with(':') { " " } else { ": " });
        out.push_str(&cut(detail));
        match lines.count() {
            0 => {}
            1 => out.push_str(" (+1 more line)"),
            n => out.push_str(&format!(" (+{n} more lines)")),
        }
    }
    if let Some(line) = tail.and_then(telling_line) {
        out.push_str("; last log line: ");
        out.push_str(&cut(line));
    }
    out
}

/// The journal line that says what went wrong: podman's last `Error:` line (after a
/// pull's retries), else the first line that is not systemd's own bookkeeping.
fn telling_line(tail: &str) -> Option<&str> {
    let lines: Vec<&str> = tail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let systemd = |l: &str| {
        let unit_prefix = l
            .split_once(": ")
            .is_some_and(|(u, _)| !u.contains(' ') && u.contains('.'));
        unit_prefix
            || [
                "Failed to start ",
                "Started ",
                "Starting ",
                "Stopped ",
                "Stopping ",
            ]
            .iter()
            .any(|p| l.starts_with(p))
    };
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error:") || l.starts_with("error:"))
        .or_else(|| lines.iter().find(|l| !systemd(l)))
        .or(lines.first())
        .copied()
}

fn cut(line: &str) -> String {
    let mut s: String = line.chars().take(MAX_DETAIL).collect();
    if line.chars().count() > MAX_DETAIL {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_log_becomes_the_summary_and_podmans_error() {
        let text = "revision 93133e64ef71 rolled back to e08964439ff2: web.service of app web restart failed; see `journalctl -u web.service`; last log lines:\n\
            Pulling image //localhost/does-not-exist:1 inside systemd: setting pull timeout to 5m0s\n\
            time=\"x\" level=warning msg=\"Failed, retrying in 1s ... (1/3). Error: initializing source\"\n\
            Error: initializing source docker://localhost/does-not-exist:1: connection refused\n\
            web.service: Main process exited, code=exited, status=125/n/a\n\
            web.service: Failed with result 'exit-code'.\n\
            Failed to start web.service - e2e web.";
        let one = one_line(text);
        assert_eq!(
            one,
            "revision 93133e64ef71 rolled back to e08964439ff2: web.service of app web restart failed; see `journalctl -u web.service`; last log line: Error: initializing source docker://localhost/does-not-exist:1: connection refused"
        );
    }

    #[test]
    fn a_crash_keeps_the_programs_own_line_and_lists_are_joined() {
        let crash = "web.service of app web failed; last log lines:\nabout to crash\nweb.service: Main process exited, code=exited, status=3/n/a\nFailed to start web.service - e2e web.";
        assert_eq!(
            one_line(crash),
            "web.service of app web failed; last log line: about to crash"
        );
        assert_eq!(
            one_line("2 problems to fix:\n  a.container:3 NotAKey\n  b.container:1 x\n"),
            "2 problems to fix: a.container:3 NotAKey (+1 more line)"
        );
        assert_eq!(one_line("one"), "one");
        let long = one_line(&format!("s; last log lines:\n{}", "x".repeat(300)));
        assert!(long.ends_with('…') && !long.contains('\n'), "{long}");
    }
}
