"""`./run setup` installs the default SoundFont (MuseScore General) and falls
back to TimGM6mb when that package cannot be installed, without failing and
without trying apt-get again on every run.

The script runs for real, against a stand-in apt-get (``$ADAPTIVE_APT_GET``)
that "installs" a package by writing the file it provides, or fails the way
apt-get does for a package the mirror lacks, and a stand-in virtualenv whose
set-up stamp is current (so pip does not run)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the apt-get path of ./run runs as root")

FAKE_APT_GET = """#!/usr/bin/env bash
# Stand-in apt-get: logs its arguments; `install` writes each provided package's file.
echo "$*" >>"$FAKE_APT_LOG"
[ "$1" = update ] && exit 0
shift
for pkg in "$@"; do
    case "$pkg" in -*) continue ;; esac
    path="$(awk -v p="$pkg" '$1 == p { print $2 }' "$FAKE_APT_PROVIDES")"
    if [ -z "$path" ]; then
        echo "E: Unable to locate package $pkg" >&2
        exit 100
    fi
    mkdir -p "$(dirname "$path")"
    printf 'RIFF\\x04\\x00\\x00\\x00sfbk' >"$path"
done
"""


@pytest.fixture
def setup_run(tmp_path):
    """Run ``./run setup`` with the SoundFonts in tmp_path and a stand-in apt-get
    providing the packages in ``provides`` ({package: file}); returns (result, apt-get calls)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    stamp = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + (REPO / "run").read_bytes()).hexdigest()
    (venv / ".adaptive-setup.sha256").write_text(stamp + "\n")
    apt_get = tmp_path / "apt-get"
    apt_get.write_text(FAKE_APT_GET)
    apt_get.chmod(0o755)
    log = tmp_path / "apt.log"
    preferred = tmp_path / "sf3" / "MuseScore_General_Full.sf3"
    fallback = tmp_path / "sf2" / "TimGM6mb.sf2"

    def run(provides: dict[str, Path]) -> tuple[subprocess.CompletedProcess, list[str]]:
        (tmp_path / "provides").write_text("".join(f"{package} {path}\n" for package, path in provides.items()))
        log.write_text("")
        env = {key: value for key, value in os.environ.items() if key != "ADAPTIVE_SOUNDFONT"}
        env.update(ADAPTIVE_VENV=str(venv), ADAPTIVE_APT_GET=str(apt_get), FAKE_APT_LOG=str(log),
                   FAKE_APT_PROVIDES=str(tmp_path / "provides"),
                   ADAPTIVE_DEBIAN_PREFERRED_SOUNDFONT=str(preferred), ADAPTIVE_DEBIAN_SOUNDFONT=str(fallback),
                   ADAPTIVE_PREFERRED_SOUNDFONT_PACKAGE="musescore-general-soundfont")
        result = subprocess.run([str(REPO / "run"), "setup"], capture_output=True, text=True, env=env, timeout=60,
                                stdin=subprocess.DEVNULL)
        return result, log.read_text().splitlines()

    run.preferred, run.fallback, run.venv = preferred, fallback, venv
    return run


def test_setup_installs_the_default_soundfont(setup_run):
    result, calls = setup_run({"musescore-general-soundfont": setup_run.preferred,
                               "timgm6mb-soundfont": setup_run.fallback})
    assert result.returncode == 0, result.stderr
    assert "installing the default SoundFont: musescore-general-soundfont" in result.stderr
    assert calls == ["update -qq", "install -y -q --no-install-recommends musescore-general-soundfont"]
    assert setup_run.preferred.is_file() and not setup_run.fallback.exists()
    # Installed: the next run asks apt-get nothing.
    result, calls = setup_run({})
    assert result.returncode == 0, result.stderr
    assert calls == []


def test_setup_falls_back_to_timgm6mb_when_the_default_cannot_be_installed(setup_run):
    result, calls = setup_run({"timgm6mb-soundfont": setup_run.fallback})
    assert result.returncode == 0, result.stderr
    assert "could not install musescore-general-soundfont" in result.stderr
    assert "falling back to timgm6mb-soundfont" in result.stderr
    assert calls == ["update -qq", "install -y -q --no-install-recommends musescore-general-soundfont",
                     "install -y -q --no-install-recommends timgm6mb-soundfont"]
    assert setup_run.fallback.is_file()
    # The failure is remembered: the next run neither fails nor calls apt-get again.
    assert "delete this file to try again" in (setup_run.venv / ".adaptive-no-preferred-soundfont").read_text()
    result, calls = setup_run({})
    assert result.returncode == 0, result.stderr
    assert calls == []


def test_setup_fails_clearly_when_no_soundfont_can_be_installed(setup_run):
    result, calls = setup_run({})
    assert result.returncode != 0
    assert "still missing after apt-get install: musescore-general-soundfont or timgm6mb-soundfont" in result.stderr
    assert not setup_run.preferred.exists() and not setup_run.fallback.exists()
