"""The default SoundFont and its fallback have a preset for every General MIDI
program (and the percussion kit) the default cue bank plays, so nothing in it
plays silent; and the places that name the default agree (the engine, `./run`,
the README).

The presets are read from the SoundFont's preset headers (the ``phdr`` chunk),
without loading it: MuseScore General decodes its samples for seconds when
FluidSynth loads it. That each part also sounds at a sensible level is
measured by tools/measure_part_levels.py (docs/cue-bank.md, "Levels and
SoundFonts")."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from adaptive.cue import DEFAULT_BANK, MidiSource, StemSource, load_bank
from adaptive.synth import FALLBACK_SOUNDFONT_PACKAGE, PREFERRED_SOUNDFONT_PACKAGE, SOUNDFONT_CANDIDATES
from adaptive.transition_runner import BRIDGE_PROGRAM

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOUNDFONT = SOUNDFONT_CANDIDATES[0]
FALLBACK_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
PERCUSSION_BANK = 128


def soundfont_presets(path: Path) -> set[tuple[int, int]]:
    """``(bank, program)`` of every preset in a SoundFont 2/3 file, from its
    ``pdta/phdr`` chunk (38-byte records: name, preset, bank, ...; the last is
    the terminal ``EOP``)."""
    with open(path, "rb") as handle:
        riff, _, form = struct.unpack("<4sI4s", handle.read(12))
        assert (riff, form) == (b"RIFF", b"sfbk"), path
        while True:
            header = handle.read(12)
            assert len(header) == 12, f"{path}: no pdta chunk"
            chunk_id, size, list_type = struct.unpack("<4sI4s", header)
            if chunk_id == b"LIST" and list_type == b"pdta":
                break
            handle.seek(size - 4 + (size & 1), 1)
        end = handle.tell() + size - 4
        while handle.tell() < end:
            sub_id, sub_size = struct.unpack("<4sI", handle.read(8))
            data = handle.read(sub_size + (sub_size & 1))
            if sub_id == b"phdr":
                records = [data[i : i + 38] for i in range(0, sub_size - 38, 38)]  # all but EOP
                return {(struct.unpack_from("<H", r, 22)[0], struct.unpack_from("<H", r, 20)[0]) for r in records}
    raise AssertionError(f"{path}: no phdr chunk")


def default_bank_presets() -> set[tuple[int, int]]:
    """``(bank, program)`` of everything the default bank plays (percussion: kit 0 of bank 128)."""
    bank = load_bank(DEFAULT_BANK)

    def preset(program: int, percussion: bool) -> tuple[int, int]:
        return (PERCUSSION_BANK, 0) if percussion else (0, program)

    wanted = {preset(BRIDGE_PROGRAM, False)}
    for cue in [*bank.cues, *bank.segments]:
        for layer in cue.layers:
            if isinstance(layer.source, StemSource) and layer.source.rendered_from is not None:
                origin = layer.source.rendered_from
                wanted.add(preset(origin.program, origin.percussion))
            elif not isinstance(layer.source, StemSource):
                wanted.add(preset(layer.program, layer.percussion))
    wanted |= {preset(stinger.program, stinger.percussion) for stinger in bank.stingers}
    wanted |= {preset(theme.program, False) for theme in bank.themes.values()}
    assert any(isinstance(layer.source, MidiSource) for cue in bank.cues for layer in cue.layers)
    return wanted


@pytest.mark.parametrize("path", [DEFAULT_SOUNDFONT, FALLBACK_SOUNDFONT], ids=["default", "fallback"])
def test_every_program_of_the_default_bank_is_in_the_soundfont(path):
    if not path.is_file():
        pytest.skip(f"{path} is not installed (./run setup installs it)")
    missing = default_bank_presets() - soundfont_presets(path)
    assert not missing, f"{path} lacks (bank, program) {sorted(missing)}"


def test_run_and_readme_name_the_engines_default_and_fallback():
    run = (REPO / "run").read_text(encoding="utf-8")
    assert re.search(r'PREFERRED_SF="\$\{ADAPTIVE_DEBIAN_PREFERRED_SOUNDFONT:-(.+?)\}"', run).group(1) \
        == str(DEFAULT_SOUNDFONT)
    assert f'PREFERRED_SF_PACKAGE="${{ADAPTIVE_PREFERRED_SOUNDFONT_PACKAGE:-{PREFERRED_SOUNDFONT_PACKAGE}}}"' in run
    assert re.search(r'FALLBACK_SF="\$\{ADAPTIVE_DEBIAN_SOUNDFONT:-(.+?)\}"', run).group(1) == str(FALLBACK_SOUNDFONT)
    assert FALLBACK_SOUNDFONT in SOUNDFONT_CANDIDATES
    assert f'FALLBACK_SF_PACKAGE="{FALLBACK_SOUNDFONT_PACKAGE}"' in run
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"| `{PREFERRED_SOUNDFONT_PACKAGE}` |" in readme and str(DEFAULT_SOUNDFONT) in readme
    assert f"| `{FALLBACK_SOUNDFONT_PACKAGE}` |" in readme and str(FALLBACK_SOUNDFONT) in readme
