//! Link legerd small in memory: packed relocations, and its running code packed
//! together.
//!
//! **Packed relative relocations (`DT_RELR`).** legerd is a position-independent
//! executable, and its ~25,000 relative relocations took 600 KB as `.rela.dyn` (24
//! bytes each). The dynamic loader reads all of them at every start, and those pages
//! stay resident for the daemon's life: 0.6 MB of its idle RSS. Packed, they take a few
//! KB; the executable still loads at a random address. It needs GNU ld 2.38 or lld 15
//! to link and glibc 2.36 to run (Debian 12 and newer); the package's dependency on
//! libc6 follows from the binary.
//!
//! **Hot code first (release builds).** Most of legerd's idle RSS is its own text: the
//! kernel maps up to 64 KB around each code page that runs (fault-around), and the
//! linker lays functions out crate by crate, so the few functions legerd runs touch
//! nearly every 64 KB of its text. `contrib/symbol-order/legerd.order` lists the
//! functions a callgrind run of legerd's everyday work executed; lld's
//! `--symbol-ordering-file` places them first, together, and the code legerd never
//! runs (error paths, commands it was not given, HTTP/2) stays on disk. The list names
//! mangled symbols of one release build: after a toolchain, dependency or version
//! change some names no longer match, those functions go back to their usual place, and
//! `contrib/symbol-order/refresh.sh` makes the list again (docs/performance.md).
//!
//! The option is lld's (and mold's); GNU ld refuses it. Rust links with its own lld on
//! x86_64 Linux since 1.90, so the order is used there unless a linker is set by hand;
//! `LEGER_LINK_ORDER=0` turns it off, `=1` forces it on.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LEGER_LINK_ORDER");

    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/symbol-order/legerd.order");
    println!("cargo:rerun-if-changed={}", order.display());
    let wanted = match std::env::var("LEGER_LINK_ORDER").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => std::env::var("PROFILE").as_deref() == Ok("release") && links_with_lld(),
    };
    if wanted && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of another build that this one does not have are expected, not errors.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this build links with rustc's own lld: x86_64 Linux with glibc, rustc 1.90
/// or newer, and no linker chosen by hand.
fn links_with_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker")
        || flags.contains("fuse-ld")
        || flags.contains("link-self-contained")
    {
        return false;
    }
    if std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    matches!(minor, Some(m) if m >= 90)
}
