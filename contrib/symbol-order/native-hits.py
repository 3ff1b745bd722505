#!/usr/bin/env python3
"""Which of legerd's functions outside a list ran natively, found with uprobes.

Usage (root, tracefs at /sys/kernel/tracing):
  native-hits.py arm BINARY ORDER      put a uprobe on every function of BINARY that
                                       ORDER does not list, and start collecting hits
  native-hits.py collect OUT           stop; write the names of the probed functions
                                       that ran to OUT; remove the probes

Why: callgrind (hot-symbols.py) sees every function that ran under valgrind, but
valgrind shows the program another CPU (aws-lc and memchr pick their code by CPU
features) and runs it fifty times slower (timeouts, deadlines and task wake-ups take
other paths). Probing only what callgrind did not see costs one trap per such call,
so the real run stays real, and its extra functions join the order.
"""
import os
import re
import signal
import subprocess
import sys
import time

T = "/sys/kernel/tracing"
STATE = "/run/leger-native-hits"


def code_segment(binary):
    """(vaddr, file offset) of the executable LOAD segment, to turn addresses into
    file offsets for uprobes."""
    out = subprocess.run(["readelf", "-lW", binary], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD" and "R E" in line:
            return int(parts[2], 16), int(parts[1], 16)
    sys.exit(f"native-hits: no executable segment in {binary}")


def arm(binary, order):
    listed = {l.strip() for l in open(order)}
    vaddr, offset = code_segment(binary)
    out = subprocess.run(["nm", "-S", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    names, seen = [], set()
    fd = os.open(f"{T}/uprobe_events", os.O_WRONLY | os.O_APPEND)
    for line in out.splitlines():
        parts = line.split()
        # Only sized symbols: a size-0 label may sit inside an instruction.
        if len(parts) != 4 or parts[2] not in "tTwW" or parts[3] in listed:
            continue
        addr, size = int(parts[0], 16), int(parts[1], 16)
        if size == 0 or addr in seen:
            continue
        seen.add(addr)
        event = f"p:legerhot/f{len(names)} {os.path.abspath(binary)}:0x{addr - vaddr + offset:x}\n"
        os.write(fd, event.encode())
        names.append(parts[3])
    os.close(fd)
    os.makedirs(STATE, exist_ok=True)
    with open(f"{STATE}/names", "w") as f:
        f.write("\n".join(names) + "\n")
    with open(f"{T}/events/legerhot/enable", "w") as f:
        f.write("1")
    # A reader drains the trace pipe as it fills: hot callers fire often, and only
    # which functions fired matters.
    reader = subprocess.Popen(
        [sys.executable, __file__, "read"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    with open(f"{STATE}/reader.pid", "w") as f:
        f.write(str(reader.pid))
    print(f"native-hits: {len(names)} functions probed", file=sys.stderr)


def read():
    hits = set()
    with open(f"{STATE}/hits", "w") as out:
        for line in open(f"{T}/trace_pipe"):
            m = re.search(r" f(\d+): \(", line)
            if m and m.group(1) not in hits:
                hits.add(m.group(1))
                out.write(m.group(1) + "\n")
                out.flush()


def collect(out):
    with open(f"{T}/events/legerhot/enable", "w") as f:
        f.write("0")
    time.sleep(1)
    try:
        os.kill(int(open(f"{STATE}/reader.pid").read()), signal.SIGTERM)
    except (OSError, ValueError):
        pass
    names = [l.rstrip("\n") for l in open(f"{STATE}/names")]
    hits = sorted({int(l) for l in open(f"{STATE}/hits") if l.strip()})
    with open(out, "w") as f:
        f.write("".join(names[i] + "\n" for i in hits))
    with open(f"{T}/uprobe_events", "w") as f:
        f.write("")
    print(f"native-hits: {len(hits)} probed functions ran", file=sys.stderr)


if __name__ == "__main__":
    cmd = sys.argv[1:2]
    if cmd == ["arm"] and len(sys.argv) == 4:
        arm(sys.argv[2], sys.argv[3])
    elif cmd == ["collect"] and len(sys.argv) == 3:
        collect(sys.argv[2])
    elif cmd == ["read"]:
        read()
    else:
        sys.exit(__doc__)
