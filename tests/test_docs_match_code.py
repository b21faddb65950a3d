"""Numbers and lists the docs state that the code decides: the endpoints
`adaptive serve` prints, its default block size and lookahead where the
client READMEs quote them, and the emotions the README's demo walks through.
A change to the code that leaves a doc behind fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from app.server import endpoint_lines
from app.settings import ServerSettings

REPO = Path(__file__).resolve().parent.parent
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _block_after(text: str, marker: str) -> list[str]:
    """The lines of the first fenced block after ``marker``."""
    rest = text[text.index(marker):]
    start = rest.index("```\n") + 4
    return rest[start : rest.index("```", start)].strip("\n").splitlines()


def test_readme_lists_the_endpoints_serve_prints_with_the_default_settings():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert _block_after(readme, "<!-- endpoints:") == endpoint_lines(ServerSettings())


def test_client_readmes_quote_the_servers_default_block_size_and_lookahead():
    defaults = ServerSettings()
    for readme in (REPO / "unity_example" / "README.md", REPO / "godot_example" / "README.md"):
        text = " ".join(readme.read_text(encoding="utf-8").split())
        for frames in re.findall(r"(\d+)-frame blocks", text):
            assert int(frames) == defaults.block_frames, (readme, frames)
        for ms in re.findall(r"(?:server defaults?:|default) (\d+) ms lookahead|lookahead \(default (\d+) ms\)", text):
            value = next(v for v in ms if v)
            assert float(value) == defaults.lookahead_ms, (readme, value)


def test_readme_names_every_emotion_of_the_emotion_walk_and_counts_them():
    timeline = tomllib.loads((REPO / "examples" / "emotion-walk.toml").read_text(encoding="utf-8"))
    emotions = list(dict.fromkeys(event["emotion"] for event in timeline["events"] if "emotion" in event))
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    match = re.search(r"walks through (\w+) emotions \(([^)]*)\)", readme)
    assert match, "README.md no longer says which emotions examples/emotion-walk.toml walks through"
    assert match.group(1) == NUMBER_WORDS[len(emotions)], (match.group(1), emotions)
    assert [name.strip() for name in match.group(2).split(",")] == emotions
    header = (REPO / "examples" / "emotion-walk.toml").read_text(encoding="utf-8").splitlines()[0]
    assert f"{NUMBER_WORDS[len(emotions)]} emotions" in header, header
