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


def _function(script: str, name: str) -> str:
    """The text of GDScript function ``name`` in ``script`` (up to the next top-level declaration)."""
    text = (ADDON / script).read_text()
    start = text.index(f"\nfunc {name}(")
    following = [text.find(f"\n{word}", start + 1) for word in ("func ", "var ", "const ", "signal ", "@export")]
    return text[start : min([i for i in following if i > 0] or [len(text)])]


def test_the_addon_votes_as_the_protocol_table_says():
    """vote() and vote_point() send /adaptive/audience/vote with the table's type tags, and refuse an
    empty name or an intensity out of range (read, not run: no Godot 4 here; the Godot 3 proof sends the
    same datagram to a real server, test_godot3_proof.py)."""
    from bridge.protocol import BY_NAME

    message = BY_NAME["audience_vote"]
    for name in ("vote", "vote_point"):
        body = _function("adaptive_soundtrack.gd", name)
        assert f'_send("{message.address}", "{message.signature}"' in body, body
        assert "_vote_intensity_ok(vote_intensity)" in body and "return false" in body
    assert "is_empty()" in _function("adaptive_soundtrack.gd", "vote")
    check = _function("adaptive_soundtrack.gd", "_vote_intensity_ok")
    assert "vote_intensity == -1.0" in check and "push_error" in check


def test_a_zone_checks_its_soundtrack_path_and_leaves_when_it_is_removed():
    """Without Godot 4 these are read, not run: get_node_or_null with a clear push_error, never a bare
    get_node; an _exit_tree that leaves the soundtrack; the soundtrack skips freed zones."""
    zone = (ADDON / "adaptive_emotion_zone.gd").read_text()
    assert "get_node(" not in zone.replace("get_node_or_null(", "")
    find = _function("adaptive_emotion_zone.gd", "_find_soundtrack")
    assert "get_node_or_null(soundtrack_path)" in find and "push_error(" in find and "return null" in find
    assert "_leave()" in _function("adaptive_emotion_zone.gd", "_exit_tree")
    leave = _function("adaptive_emotion_zone.gd", "_leave")
    assert "is_instance_valid(_soundtrack)" in leave and "exit_zone(self)" in leave
    push = _function("adaptive_soundtrack.gd", "_push_scene")
    assert push.index("is_instance_valid(zone)") < push.index("zone.priority")


def test_the_stream_player_skips_back_after_a_hitch_and_backs_off_reconnecting():
    process = _function("adaptive_stream_player.gd", "_process")
    assert "skipped_frames += skip" in process and "2 * target_frames" in process
    assert "_reconnect_at" in process and "_reconnect_delay * 2.0" in process
    assert process.index("if t >= _reconnect_at") < process.index("_tcp.connect_to_host")


def test_the_music_plays_on_while_the_game_is_paused():
    for script in ("adaptive_soundtrack.gd", "adaptive_stream_player.gd"):
        assert "process_mode = Node.PROCESS_MODE_ALWAYS" in _function(script, "_init"), script


def test_the_addon_follows_session_elsewhere_as_the_python_client_does():
    """On a cluster (docs/cluster.md) a hello may be answered with session_elsewhere: the addon checks it
    (redirect_problem, the same text the Godot 3 proof runs against real sockets, test_godot3_proof.py),
    refuses a bad one with nothing changed, stops after MAX_REDIRECTS in a row (counted until a welcome),
    else closes its socket, opens one to the node named, takes its host, port and session id and says hello
    there; the stream player then connects to that host. Read, not run: no Godot 4 here."""
    soundtrack = (ADDON / "adaptive_soundtrack.gd").read_text()
    assert "signal redirected(info: Dictionary)" in soundtrack
    handle = _function("adaptive_soundtrack.gd", "_handle")
    assert 'address == "/adaptive/session/elsewhere"' in handle and "_follow_redirect(a)" in handle
    assert handle.index('address == "/adaptive/welcome"') < handle.index("_redirects_in_a_row = 0")
    follow = _function("adaptive_soundtrack.gd", "_follow_redirect")
    steps = ["redirect_problem(a)", "_refuse_redirect(problem)", "_redirects_in_a_row >= MAX_REDIRECTS",
             'server_error.emit("client_redirect_loop"', "udp.bind(0, _bind_address(a[1]))", "udp.set_dest_address(a[1], a[2])",
             "_refuse_redirect(", "_udp.close()", "_udp = udp", "_redirects_in_a_row += 1", "host = a[1]", "osc_port = a[2]",
             "session = a[0]", "redirected.emit(redirected_from)", "_hello()"]
    at = 0
    for step in steps:  # each, in this order
        found = follow.find(step, at)
        assert found >= 0, f"{step} not found after {follow[:at][-80:]!r}"
        at = found + len(step)
    assert 'server_error.emit("client_bad_redirect"' in _function("adaptive_soundtrack.gd", "_refuse_redirect")
    assert 'redirect_failure == ""' in _function("adaptive_soundtrack.gd", "_process")  # no hellos after a loop
    player = _function("adaptive_stream_player.gd", "_connect")
    assert "_tcp.connect_to_host(_soundtrack.host," in player  # the node the redirect named, not the first one
