"""The Godot 4 addon (godot_example/addons/adaptive_soundtrack). Debian has no Godot 4 runtime, so its
GDScript is parsed here with gdtoolkit's Godot 4 grammar (syntax only: Godot's own analyzer and the
engine API are not checked); the protocol itself is proven from a real Godot runtime by
test_godot3_proof.py, whose script mirrors this addon's codec and stream parsing."""

from __future__ import annotations

import configparser

import pytest

from tests.clients.conftest import REPO

ADDON = REPO / "godot_example" / "addons" / "adaptive_soundtrack"


def test_plugin_cfg_names_an_existing_script():
    config = configparser.ConfigParser()
    config.read(ADDON / "plugin.cfg")
    plugin = config["plugin"]
    assert plugin["name"].strip('"') and plugin["version"].strip('"')
    assert (ADDON / plugin["script"].strip('"')).is_file()


@pytest.mark.parametrize("script", sorted(p.name for p in ADDON.glob("*.gd")))
def test_gdscript_parses_as_godot_4(script):
    from gdtoolkit.parser import parser

    parser.parse((ADDON / script).read_text())  # raises lark's UnexpectedInput on a syntax error


def test_addon_declares_the_signals_and_classes_its_readme_promises():
    soundtrack = (ADDON / "adaptive_soundtrack.gd").read_text()
    for signal in ("signal beat(", "signal bar(", "signal cue_changed(", "signal stinger_played(", "signal server_error("):
        assert signal in soundtrack
    assert "PacketPeerUDP" in soundtrack
    player = (ADDON / "adaptive_stream_player.gd").read_text()
    assert "AudioStreamGenerator" in player and "push_buffer" in player and "StreamPeerTCP" in player
