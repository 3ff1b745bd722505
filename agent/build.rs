//! Link legerd with packed relative relocations (`DT_RELR`).
//!
//! Why: legerd is a position-independent executable, and its ~25,000 relative
//! relocations took 600 KB as `.rela.dyn` (24 bytes each). The dynamic loader reads
//! all of them at every start, and those pages stay resident for the daemon's life:
//! 0.6 MB of its idle RSS. Packed, they take a few KB; the executable still loads at a
//! random address. It needs GNU ld 2.38 or lld 15 to link and glibc 2.36 to run
//! (Debian 12 and newer); the package's dependency on libc6 follows from the binary.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
}
