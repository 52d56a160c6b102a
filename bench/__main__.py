"""`make bench` / `python -m bench [name ...] [--quick]`: run benchmarks, update BENCHMARKS.md.

Each `bench/<name>.py` exposes `async def main(quick: bool = False) -> str` returning a Markdown
section. Results are written between `<!-- bench:<name> -->` markers in BENCHMARKS.md, so one
benchmark can be re-run without touching the others. `--quick` only smoke-tests (no write).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ORDER = ["foundation", "intake", "dispatch", "complaints", "analytics"]
TARGET = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    text = TARGET.read_text() if TARGET.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    stamp = f"_Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit `{commit or '?'}` on {machine()}._\n\n"
    block = f"{start}\n{stamp}{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    TARGET.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {ORDER})")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny sizes, nothing written"
    )
    args = parser.parse_args()
    names = args.names or [n for n in ORDER if (Path(__file__).parent / f"{n}.py").exists()]
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== bench {name}{' (quick)' if args.quick else ''}", flush=True)
        body = asyncio.run(module.main(quick=args.quick))
        print(body, flush=True)
        if not args.quick:
            write_section(name, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
