"""``python -m bench.profile FILE [--top N] [--match TEXT]``: where a hub process spent its samples.

Reads the collapsed stacks py-spy wrote for ``python -m bench --profile DIR`` (one stack a line,
frames separated by ``;``, then the sample count) and prints, for the functions of the project
(``hub/``, ``plugins/``) and for the whole stack, the share of samples in which each function is on
the stack (inclusive) and at its top (exclusive). ``--match`` keeps only stacks passing through a
frame containing TEXT, to break one stage down.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::(?P<line>\d+))?\)$")


def read(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def name(frame: str) -> str:
    """``func (path:line)`` -> ``path:func`` with the path cut to what follows site-packages."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    else:
        file = file.rsplit("/work/", 1)[-1]
    return f"{file}:{m['func']}"


def summarise(stacks: list[tuple[list[str], int]], top: int, match: str | None) -> str:
    if match:
        stacks = [(s, n) for s, n in stacks if any(match in f for f in s)]
    total = sum(n for _, n in stacks) or 1
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    for frames, n in stacks:
        names = [name(f) for f in frames]
        for fn in set(names):
            inclusive[fn] += n
        if names:
            exclusive[names[-1]] += n
    lines = [f"{total} samples" + (f" through {match!r}" if match else "")]
    lines.append("\ninclusive (on the stack), the project's functions:")
    own = [(f, n) for f, n in inclusive.most_common() if f.startswith(("hub/", "plugins/", "main/"))]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own[:top]]
    lines.append("\nexclusive (at the top of the stack):")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in exclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--match", help="only stacks through a frame containing this text")
    args = p.parse_args(argv)
    print(summarise(read(args.file), args.top, args.match))


if __name__ == "__main__":
    main()
