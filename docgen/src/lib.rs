//! Man pages and shell completions, generated from the clap definitions of `legerctl`
//! and `legerd` so they can never drift from what the binaries parse.
//!
//! `contrib/package.sh` runs the `leger-docgen` binary while it builds a package; the
//! tests in `tests/pages.rs` check that every subcommand and every config key is
//! documented. The file-format pages (`desired.toml(5)`, `leger.toml(5)`,
//! `legerd.conf(5)`) are written by hand in `docs/man/` and shipped next to these.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// legerctl's command tree, exactly as the binary builds it.
pub fn legerctl_command() -> clap::Command {
    legerctl::cli::Cli::command()
}

/// legerd's command line, exactly as the binary builds it.
pub fn legerd_command() -> clap::Command {
    legerd::cli::Args::command()
}

/// Writes `man/man1/legerctl.1` plus one `legerctl-<sub>[-<subsub>].1` page per
/// subcommand, `man/man8/legerd.8`, and bash, zsh and fish completions for both
/// binaries under `completions/`. Returns the files written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut ctl = legerctl_command();
    ctl.build();
    write_pages(&ctl, "1", &out.join("man/man1"), &mut written)?;
    let mut daemon = legerd_command();
    daemon.build();
    write_pages(&daemon, "8", &out.join("man/man8"), &mut written)?;
    for (name, cmd) in [("legerctl", ctl), ("legerd", daemon)] {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let dir = out.join("completions").join(shell.to_string());
            mkdir(&dir)?;
            let path = clap_complete::generate_to(shell, &mut cmd.clone(), name, &dir)
                .with_context(|| format!("cannot write {shell} completions for {name}"))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The page for `cmd` and, recursively, one for each visible subcommand, named the way
/// `man legerctl-set-desired` finds them.
fn write_pages(
    cmd: &clap::Command,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    mkdir(dir)?;
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    // clap_mangen titles the page with the display name, which `write_pages` sets to the
    // full `legerctl-set-desired` for subcommands, so the title matches the file.
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("leger")
        .render(&mut buf)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.{section}"));
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let full = format!("{name}-{}", sub.get_name());
        let sub = sub.clone().display_name(full);
        write_pages(&sub, section, dir, written)?;
    }
    Ok(())
}

fn mkdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
