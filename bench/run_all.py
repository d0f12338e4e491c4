"""Run every benchmark script in bench/ in turn (`make bench`).

Each ``bench_*.py`` builds its own audio under ``bench/out/``, prints a table with ratios
against peers measured in the same run, and writes ``bench/out/<name>.json``. This runner
adds the machine description to ``bench/out/machine.json`` so results can be recorded in
docs/benchmarks.md with the machine they came from. ``bench_memory.py`` (run by name:
``run_all.py memory``) starts the installed ``auralisd`` and Debian's ``mpd`` on generated
libraries and scans 10,000 tracks: a few minutes.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def describe_machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    machine = describe_machine()
    (out / "machine.json").write_text(json.dumps(machine, indent=2))
    print("machine:", json.dumps(machine))
    only = set(sys.argv[1:])
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"\n=== {script.name} ===", flush=True)
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print("\nfailed:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
