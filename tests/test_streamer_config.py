"""config.toml → one frozen dataclass tree; every key a flag; validation in one place."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streamer.config import Config, ConfigError, build_arg_parser, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_config_file_loads_with_the_embedded_model_on_loopback() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.server.host == "127.0.0.1" and config.server.port == 8765
    assert config.model.model == "tiny.en"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


def test_the_shipped_config_file_says_what_the_built_in_defaults_say() -> None:
    """`python -m streamer` without --config runs the daemon `make run` runs: every key of
    config.toml holds its field's default, and every field is in the file (its documentation)."""
    assert load_config(ROOT / "config.toml") == Config()
    text = (ROOT / "config.toml").read_text()
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(getattr(Config(), section.name)):
            assert f"\n{field.name} = " in text, f"[{section.name}] {field.name} is missing from config.toml"


def test_flags_override_the_file_in_long_and_short_form(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\n[stream]\ntick_interval = 1\n')
    config = load_config(path, ["--port", "0", "--stream.endpoint-silence", "0.7", "--tick-interval", "0.25", "--model", "base"])
    assert config.server.port == 0
    assert config.stream.endpoint_silence == 0.7 and config.stream.tick_interval == 0.25
    assert config.model.model == "base"
    assert load_config(path).stream.tick_interval == 1.0  # a TOML int where a float is wanted


def test_every_field_has_a_flag() -> None:
    parser = build_arg_parser()
    flags = {option for action in parser._actions for option in action.option_strings}
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(section.type if isinstance(section.type, type) else getattr(Config(), section.name)):
            assert f"--{section.name}.{field.name.replace('_', '-')}" in flags
    assert {"--host", "--port", "--model", "--config"} <= flags


@pytest.mark.parametrize(
    "text, message",
    [
        ("[server]\nport = 70000\n", "server.port"),
        ("[vad]\naggressiveness = 5\n", "vad.aggressiveness"),
        ("[stream]\nmax_buffer = 31.0\n", "stream.max_buffer"),
        ("[stream]\ntick_interval = 'fast'\n", "stream.tick_interval"),
        ("[server]\nporrt = 1\n", "porrt"),
        ("[servers]\nport = 1\n", "servers"),
        ("[server\n", "invalid TOML"),
    ],
)
def test_bad_values_fail_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path)


def test_bad_flag_values_fail_like_file_values() -> None:
    with pytest.raises(ConfigError, match=r"model\.device"):
        load_config(None, ["--device", "tpu"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Path("/nonexistent/config.toml"))
