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


def publish(text: str, write_docs: bool, path: Path, title: str) -> None:
    """Print a benchmark's Markdown ``text`` and, with ``write_docs``, make it
    the section headed ``title`` of ``path`` (:func:`write_section`)."""
    print(text)
    if write_docs:
        write_section(path, title, text)


def machine_facts() -> dict:
    """What the benchmarks publish about the machine: ``cpu`` (model name with
    family and model numbers), ``virtual`` (a hypervisor flag), ``cores``,
    ``memory_gb``, ``os``, ``python``, ``numpy``."""
    import os
    import platform
    import re

    import numpy

    def first_match(path: str, pattern: str) -> str:
        try:
            match = re.search(pattern, Path(path).read_text(), re.MULTILINE)
        except OSError:
            return "?"
        return match.group(1).strip() if match else "?"

    cpu = first_match("/proc/cpuinfo", r"^model name\s*:\s*(.*)$")
    family = first_match("/proc/cpuinfo", r"^cpu family\s*:\s*(.*)$")
    model = first_match("/proc/cpuinfo", r"^model\s*:\s*(.*)$")
    flags = first_match("/proc/cpuinfo", r"^flags\s*:\s*(.*)$").split()
    mem_kb = first_match("/proc/meminfo", r"^MemTotal:\s*(\d+)")
    os_name = first_match("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)"?')
    return {
        "cpu": f"{cpu} (family {family}, model {model})",
        "virtual": "hypervisor" in flags,
        "cores": os.cpu_count(),
        "memory_gb": int(mem_kb) / 1024 / 1024 if mem_kb.isdigit() else 0.0,
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
    }
