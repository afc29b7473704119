"""``python -m bench [ingest|latency|outbound|memory|scale|all ...] [--quick] [--postgres] [--soak S]``.

Prints a table and writes ``bench/results/<timestamp>.json``. Exits 1 when a benchmark crashed
(a missed target is reported, not an error), so ``python -m bench all --quick`` is a smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ingest, latency, memory, outbound, scale
from bench.common import PROFILE_ENV, load_average, machine_facts
from bench.context import Context
from bench.report import render

BENCHMARKS: dict[str, Callable[[Context], Awaitable[dict[str, Any]]]] = {
    "ingest": ingest.run,
    "latency": latency.run,
    "outbound": outbound.run,
    "memory": memory.run,
    # One and two processes, SQLite and PostgreSQL (it uses PostgreSQL whatever --postgres says).
    "scale": scale.run,
}
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "benchmark",
        nargs="*",
        default=["all"],
        choices=[*BENCHMARKS, "all"],
        help="one or more; all by default",
    )
    p.add_argument("--quick", action="store_true", help="small counts (a smoke test, about 15 s in all)")
    p.add_argument(
        "--postgres",
        action="store_true",
        help="use postgresql://127.0.0.1:5432/test (its public schema is dropped!) instead of SQLite",
    )
    p.add_argument(
        "--soak",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long the memory benchmark loads the hub",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="sample every hub process with py-spy (200 Hz) into DIR/<hub>-<pid>.txt (collapsed stacks)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary hub directories (logs, db)")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/<timestamp>.json")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if "all" in args.benchmark else list(dict.fromkeys(args.benchmark))
    # --quick with several benchmarks shares one hub to stay within its time budget.
    ctx = Context(
        quick=args.quick,
        postgres=args.postgres,
        shared=args.quick and len(names) > 1,
        soak_seconds=args.soak,
    )
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "options": {"quick": args.quick, "database": "postgresql" if args.postgres else "sqlite"},
        "results": {},
    }
    failed = []
    t_all = time.monotonic()
    try:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            load = load_average()
            try:
                result = await BENCHMARKS[name](ctx)
                result["loadavg_before"] = load
                result["duration_s"] = round(time.monotonic() - t0, 1)
                report["results"][name] = result
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                report["results"][name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        await ctx.close()
        if args.keep:
            print(f"hub directories kept in {ctx.root}", file=sys.stderr)
        else:
            shutil.rmtree(ctx.root, ignore_errors=True)
    report["duration_s"] = round(time.monotonic() - t_all, 1)
    print(render(report))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nresults written to {path}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(Path(args.profile).resolve())
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
