//! legerd's stderr log follows NO_COLOR and the terminal (no-color.org): colours for a
//! person at a terminal, plain text for a pipe, a file, the journal, or NO_COLOR set.
//!
//! The terminal is a real pseudo-terminal from util-linux's `script`. legerd is run
//! with a configuration it refuses (user mode without $XDG_RUNTIME_DIR), so it logs
//! one error and exits at once, touching nothing.

use std::process::{Command, Output};

fn legerd(no_color: Option<&str>, terminal: bool) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let legerd = env!("CARGO_BIN_EXE_legerd");
    let args = format!(
        "{legerd} --user --config-dir {} --once",
        dir.path().display()
    );
    let mut c = if terminal {
        let mut c = Command::new("script");
        c.args(["-qec", &args, "/dev/null"]);
        c
    } else {
        let mut c = Command::new(legerd);
        c.args(["--user", "--config-dir"])
            .arg(dir.path())
            .arg("--once");
        c
    };
    c.env_remove("XDG_RUNTIME_DIR").env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn legerd_colours_its_log_only_on_a_terminal_without_no_color() {
    let tty = legerd(None, true);
    assert!(
        text(&tty).contains("XDG_RUNTIME_DIR"),
        "legerd said why it stopped: {}",
        text(&tty)
    );
    assert!(
        text(&tty).contains("\x1b["),
        "coloured on a terminal: {tty:?}"
    );
    let no_color = legerd(Some("1"), true);
    assert!(text(&no_color).contains("XDG_RUNTIME_DIR"), "{no_color:?}");
    assert!(!text(&no_color).contains('\x1b'), "NO_COLOR: {no_color:?}");
    // An empty NO_COLOR does not count (no-color.org).
    assert!(text(&legerd(Some(""), true)).contains("\x1b["));
    let pipe = legerd(None, false);
    assert!(text(&pipe).contains("XDG_RUNTIME_DIR"), "{pipe:?}");
    assert!(!text(&pipe).contains('\x1b'), "a pipe: {pipe:?}");
}
