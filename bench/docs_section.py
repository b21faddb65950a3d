"""Publishing benchmark figures: each benchmark owns one ``## `` section of
``docs/benchmarks.md`` and rewrites only that."""

from __future__ import annotations

from pathlib import Path

HEADER = ("# Benchmarks\n\nFigures published by the benchmarks in `bench/` (see `bench/README.md`). "
          "Each benchmark rewrites only its own section.\n")


def write_section(path: Path, title: str, section: str) -> None:
    """Replace (or add at the end) the section headed ``title`` (a ``## `` line)
    of ``path`` with ``section``, up to the next ``## `` heading, leaving every
    other section as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == title), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        kept_after = lines[end:]
        new = "\n".join(lines[:start] + section.rstrip("\n").splitlines() + ([""] if kept_after else [])
                        + kept_after).rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")
