"""`adaptive serve` settings: defaults, a --config file, options over it, and
every bad value named with what is allowed."""

from __future__ import annotations

import pytest

from adaptive.errors import ConfigError
from app.cli import _serve_settings, build_parser


def settings(*argv: str):
    return _serve_settings(build_parser().parse_args(["serve", *argv]))


def test_defaults_then_config_then_options(tmp_path):
    default = settings()
    assert (default.block_frames, default.lookahead_ms, default.realtime_priority) == (1024, 40.0, 10)
    config = tmp_path / "serve.toml"
    config.write_text("block_frames = 256\nrealtime_priority = 0\nlookahead_ms = 60.0\n", encoding="utf-8")
    from_file = settings("--config", str(config))
    assert (from_file.block_frames, from_file.lookahead_ms, from_file.realtime_priority) == (256, 60.0, 0)
    overridden = settings("--config", str(config), "--realtime-priority", "20", "--block-frames", "512")
    assert (overridden.block_frames, overridden.realtime_priority) == (512, 20)


@pytest.mark.parametrize("text, expected", [
    ("realtime_priority = 100", "realtime_priority 100 is out of range (allowed: 0..99)"),
    ("realtime_priority = 10.5", "realtime_priority 10.5 is not allowed (allowed: a whole number from 0 to 99)"),
    ("block_frames = 512.5", "block_frames 512.5 is not allowed (allowed: a whole number from 32 to 4096)"),
    ("block_frames = 16", "block_frames 16 is out of range (allowed: 32..4096)"),
    ("lookahead_ms = true", "lookahead_ms True is out of range"),
    ("blocksize = 512", "unknown setting 'blocksize'"),
    ("block_frames = ", "not valid TOML"),
])
def test_bad_config_values_are_named_with_what_is_allowed(tmp_path, text, expected):
    config = tmp_path / "serve.toml"
    config.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        settings("--config", str(config))
    assert str(config) in str(caught.value)
    assert expected in str(caught.value)


def test_settings_made_in_code_get_the_same_checks():
    from pydantic import ValidationError

    from app.settings import ServerSettings

    with pytest.raises(ValidationError, match="out of range"):
        ServerSettings(lookahead_ms=5000.0)
    with pytest.raises(ValidationError, match="allowed: 32..4096"):
        ServerSettings(block_frames=16)
    settings = ServerSettings(sample_rate_hz=44100)
    assert settings.sample_rate_hz == 44100
    with pytest.raises(ValidationError):
        settings.block_frames = 512  # frozen


def test_the_config_file_and_the_options_name_the_same_settings():
    from app.settings import CONFIG_KEYS

    options = build_parser().parse_args(["serve"])
    assert all(hasattr(options, key) for key in CONFIG_KEYS)


def test_off_loopback_the_server_refuses_to_start_without_credentials_and_says_how(tmp_path, monkeypatch):
    monkeypatch.delenv("ADAPTIVE_CREDENTIALS", raising=False)
    with pytest.raises(ConfigError) as caught:
        settings("--host", "0.0.0.0")
    message = str(caught.value)
    assert "'0.0.0.0' is not loopback" in message
    assert "adaptive credentials DIR" in message and "--credentials DIR" in message
    assert "ADAPTIVE_CREDENTIALS" in message and "docs/network.md" in message
    assert settings("--host", "0.0.0.0", "--credentials", str(tmp_path)).credentials == tmp_path
    monkeypatch.setenv("ADAPTIVE_CREDENTIALS", str(tmp_path))
    assert settings("--host", "192.168.1.20").credentials == tmp_path  # the environment variable
    assert settings().credentials == tmp_path  # and on loopback too, when set


def test_credentials_that_cannot_be_read_stop_the_server_with_what_to_do(tmp_path):
    from app.server import Server
    from app.settings import ServerSettings

    with pytest.raises(ConfigError, match="adaptive credentials"):
        Server(ServerSettings(credentials=tmp_path / "none", osc_port=0, audio_tcp_port=0, zmq_audio_port=0,
                              zmq_control_port=0, zmq_events_port=0))
