#!/usr/bin/env python3
"""Turn a callgrind profile of legerd into a link order for its code.

Usage: hot-symbols.py LEGERD_BINARY CALLGRIND_OUT|NAMES... > legerd.order

A NAMES file lists one symbol per line (native-hits.py writes one).

Why: legerd's idle RSS is mostly its own text. The kernel maps up to 64 KB around
each code page a process runs (fault-around), and the linker lays functions out in
crate order, so the few functions legerd runs are spread over nearly every 64 KB
window of its text. Listing the functions it ran first (lld's
`--symbol-ordering-file`, agent/build.rs) packs them together, and the code it never
runs stays on disk.

callgrind records every function that ran at least once, whatever its cost, so the
list is complete for the scenarios that were run (benches/benches/testbed.rs,
`LEGER_BENCH_HOT_CODE`); several profiles (say 10 and 100 apps, where sorts and maps
take other code paths) are merged. The symbols are kept in the binary's own address order, so
code that was near other code stays near it.
"""
import re
import subprocess
import sys


def ran(profile):
    """Mangled names of the functions of legerd's own object that ran."""
    names = {}  # callgrind's name compression: "(id) name" defines, "(id)" reuses
    objects = {}
    current_ob = None
    hot = set()

    def resolve(table, value):
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "")

    for line in open(profile, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            current_ob = resolve(objects, line[3:])
        elif line.startswith(("cob=", "cfi=", "cfl=")):
            if line.startswith("cob="):
                resolve(objects, line[4:])
        elif line.startswith("cfn="):
            resolve(names, line[4:])
        elif line.startswith("fn="):
            name = resolve(names, line[3:])
            if current_ob and current_ob.endswith("/legerd"):
                hot.add(name)
    return hot


def text_symbols(binary):
    """(address, name) of the binary's code symbols, in address order."""
    out = subprocess.run(
        ["nm", "--defined-only", binary], check=True, capture_output=True, text=True
    ).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    return syms


# Generic code whose instances run by size or timing, not by what legerd does: a sort
# takes another algorithm past 20 elements, a B-tree splits past 11, a tokio task
# completes before or after its handle is polled, similar's diff gives up at its
# deadline (always under valgrind). When one instance ran, all its siblings follow the
# hot code, so a sibling that runs later faults in a page next to it, not a page of
# its own somewhere in the text.
WARM_FAMILIES = (
    "_ZN4core5slice4sort",
    "_ZN5tokio7runtime4task",
    "_ZN5alloc11collections5btree",
    "_ZN7similar10algorithms",
)


def local(name):
    """A name without the `.N` suffix LLVM gives local functions when LTO merges
    modules: the number moves with any change elsewhere in the program."""
    return re.sub(r"\.[0-9]+$", "", name)


def family(name):
    """A symbol's name without its hash: the instances of one generic function."""
    return re.sub(r"17h[0-9a-f]{16}E$", "", local(name))


# A function that ran brings the other instances of its generic family along when the
# family is this small (`fetch_remote_over` for `&str` and for `String`): another
# build or another run may use the other one, and a legacy symbol's hash moves when a
# type it names changes. Big families (a `poll` per future type) stay out.
SMALL_FAMILY = 4


def siblings(name):
    """Names that pick the same work by CPU features: aws-lc's `_alt` variants."""
    return {name[: -len("_alt")]} if name.endswith("_alt") else {name + "_alt"}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary = sys.argv[1]
    hot = set()
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8", errors="replace") as f:
            is_profile = f.readline().startswith("# callgrind format")
        if is_profile:
            hot |= ran(path)
        else:
            hot |= {l.strip() for l in open(path) if l.strip()}
    symbols = text_symbols(binary)
    names = {name for _, name in symbols}
    for name in list(hot):
        hot |= siblings(name) & names
    # The profiles may come from an earlier build: match LLVM's local renames too.
    hot_local = {local(n) for n in hot}
    ran_here = {n for n in names if n in hot or local(n) in hot_local}
    members = {}
    for n in names:
        members.setdefault(family(n), []).append(n)
    hot_families = {family(n) for n in hot}
    warm_families = {family(n) for n in hot if n.startswith(WARM_FAMILIES)}
    seen = set()
    kept = 0
    for _, name in symbols:
        if name in ran_here and name not in seen:
            seen.add(name)
            print(name)
            kept += 1
    warm = 0
    for _, name in symbols:
        f = family(name)
        near = f in hot_families and len(members[f]) <= SMALL_FAMILY
        if name not in seen and (near or f in warm_families):
            seen.add(name)
            print(name)
            warm += 1
    print(
        f"hot-symbols: {kept} functions of {binary} ran, then {warm} instances of "
        "small or size- and timing-dependent generic families they belong to",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
