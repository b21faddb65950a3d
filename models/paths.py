"""Where the generator's data and caches live (settings, with defaults)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """``$ADAPTIVE_DATA`` if set, else ``../shared/data`` relative to the repository root."""
    return Path(os.environ.get("ADAPTIVE_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def default_cache_dir() -> Path:
    """``models/`` in the project's cache folder (``$ADAPTIVE_CACHE``, else
    ``$XDG_CACHE_HOME/adaptive``, else ``~/.cache/adaptive``), outside the repository."""
    if os.environ.get("ADAPTIVE_CACHE"):
        return Path(os.environ["ADAPTIVE_CACHE"]) / "models"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "adaptive" / "models"
