#!/usr/bin/env python3
"""Measures how often `legerctl validate` agrees with podman's real quadlet generator.

Usage: agreement.py LEGERCTL GENERATOR PODMAN_VERSION CORPUS_DIR [--verbose]

Every quadlet file of CORPUS_DIR (for example podman's own test/e2e/quadlet files,
exported from a local podman clone with `git archive`) is checked alone: it is put in
an app folder `app/` together with the corpus's non-quadlet files (YAML, env files
it may name), then
  - `legerctl validate --podman PODMAN_VERSION --json` gives leger's verdict, and
  - `GENERATOR -dryrun` (QUADLET_UNIT_DIRS=that folder) gives podman's:
    refused when it prints `converting "<file>": ...` or `error loading ...<file>`.
Runs offline; needs no root. Prints the figures and every disagreement.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

QUADLET_EXTS = {"container", "volume", "network", "pod", "kube", "image", "build", "artifact"}


def ext(name):
    return name.rsplit(".", 1)[-1] if "." in name else ""


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    verbose = "--verbose" in sys.argv
    if len(args) != 4:
        sys.exit(__doc__)
    legerctl, generator, version, corpus = args
    files = sorted(os.listdir(corpus))
    quadlets = [f for f in files if ext(f) in QUADLET_EXTS and os.path.isfile(os.path.join(corpus, f))]
    others = [f for f in files if ext(f) not in QUADLET_EXTS and os.path.isfile(os.path.join(corpus, f))]
    agree = 0
    rows = []
    counts = {"both accept": 0, "both refuse": 0, "leger only refuses": 0, "generator only refuses": 0}
    for q in quadlets:
        with tempfile.TemporaryDirectory() as tmp:
            app = os.path.join(tmp, "apps", "app")
            os.makedirs(app)
            shutil.copy(os.path.join(corpus, q), app)
            for o in others:
                shutil.copy(os.path.join(corpus, o), app)
            lv = subprocess.run(
                [legerctl, "validate", "--podman", version, "--json", os.path.join(tmp, "apps")],
                capture_output=True, text=True, env={"PATH": "/nonexistent"},
            )
            report = json.loads(lv.stdout)
            leger_msgs = [e["message"] for e in report["errors"]]
            gen = subprocess.run(
                [generator, "-dryrun", "-no-kmsg-log"],
                capture_output=True, text=True,
                env={"QUADLET_UNIT_DIRS": os.path.join(tmp, "apps"), "PATH": "/usr/bin:/bin"},
            )
            gen_msgs = [
                l for l in gen.stderr.splitlines()
                if f'converting "{q}"' in l or ("error loading" in l and q in l)
            ]
            leger_refuses = not report["valid"]
            gen_refuses = bool(gen_msgs)
            key = {
                (False, False): "both accept",
                (True, True): "both refuse",
                (True, False): "leger only refuses",
                (False, True): "generator only refuses",
            }[(leger_refuses, gen_refuses)]
            counts[key] += 1
            if leger_refuses == gen_refuses:
                agree += 1
            if leger_refuses != gen_refuses or verbose:
                rows.append((q, key, leger_msgs, gen_msgs))
    total = len(quadlets)
    print(f"podman {version} generator {generator}: {total} files, {agree} agree ({100.0 * agree / total:.1f}%)")
    for k, v in counts.items():
        print(f"  {k}: {v}")
    for q, key, lm, gm in rows:
        print(f"- {q}: {key}")
        for m in lm:
            print(f"    leger: {m}")
        for m in gm:
            print(f"    generator: {m.split(': ', 1)[-1] if m.startswith('quadlet-generator') else m}")


if __name__ == "__main__":
    main()
