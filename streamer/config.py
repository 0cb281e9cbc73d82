"""The daemon's settings: one frozen dataclass tree, read from TOML, every key overridable by a flag.

`load_config(path, argv)` is the single entry point. Flags are generated from the dataclass
fields, so a new field is at once a TOML key and a command-line flag:
`[stream] tick_interval = 0.3` ⇔ `--stream.tick-interval 0.3` ⇔ `--tick-interval 0.3` (the short
form exists when the field name is unique across sections). Validation lives in each section's
`__post_init__`, so a bad value from the file or from a flag fails the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")
COMMIT_POLICIES = ("local-agreement", "alignatt")  # streamer.stream.policy.make_policy builds each


# As model.transcribe.MIN_ENCODER_PADDING (not imported: the config loads without torch).
MIN_ENCODER_PADDING = 4.0


class ConfigError(ValueError):
    """The configuration file or a flag holds an invalid value."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    # Frames above this get error 4413; websockets itself drops frames above twice this (1009).
    max_frame_bytes: int = 1 << 20
    max_streams: int = 16
    static_dir: str = ""  # empty: the package's streamer/static
    shutdown_timeout: float = 10.0  # seconds to finalise streams on SIGTERM before closing anyway
    max_audio_rate: float = 4.0  # × real time a stream may send audio, sustained (close 4429)
    audio_burst: float = 60.0  # seconds of audio a stream may send at once beyond that (catching up)
    max_load: float = 0.9  # worker busy fraction from which new sessions may be refused (4429)...
    max_tick_lag: float = 1.0  # ...when decodes also finish this late past their deadline (p90, last 10 s)
    tls_cert: str = ""  # PEM certificate (chain): serve wss:// and https://
    tls_key: str = ""  # PEM private key; empty: inside tls_cert
    log_level: str = "info"  # debug | info | warning | error
    # SIGTERM with a shared store: finalise open streams before they move (true; cuts the utterance
    # where the speaker is) or hand them over mid-utterance (false; the client resends the rest)
    drain_finalize: bool = False

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, f"server.port must be in 0..65535, got {self.port}")
        _check(self.max_frame_bytes >= 1024, f"server.max_frame_bytes must be >= 1024, got {self.max_frame_bytes}")
        _check(self.max_streams >= 1, f"server.max_streams must be >= 1, got {self.max_streams}")
        _check(self.shutdown_timeout > 0, f"server.shutdown_timeout must be > 0, got {self.shutdown_timeout}")
        _check(self.max_audio_rate >= 1.0, f"server.max_audio_rate must be >= 1 (real time), got {self.max_audio_rate}")
        _check(self.audio_burst > 0, f"server.audio_burst must be > 0 s, got {self.audio_burst}")
        _check(0 < self.max_load <= 1.0, f"server.max_load must be in (0, 1], got {self.max_load}")
        _check(self.max_tick_lag > 0, f"server.max_tick_lag must be > 0 s, got {self.max_tick_lag}")
        _check(not self.tls_key or bool(self.tls_cert), "server.tls_key needs server.tls_cert")
        for name in ("tls_cert", "tls_key"):
            value = getattr(self, name)
            _check(not value or Path(value).expanduser().is_file(), f"server.{name}: file not found: {value}")
        _check(self.log_level in LOG_LEVELS, f"server.log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")


@dataclass(frozen=True)
class ModelConfig:
    model: str = "tiny.en"  # a name load_model knows, or a path
    device: str = "auto"  # auto: cuda when present, else cpu
    dtype: str = "auto"  # auto: float16 on cuda; on cpu bfloat16 where the CPU has it natively, else float32
    threads: int = 0  # torch intra-op threads of the worker for streams' batches; 0: all cores (1 can win where other work shares them)
    file_threads: int = 0  # ...and for an upload's windows (throughput work between the batches); 0: all cores
    beam_size: int = 1  # 1 = greedy: streaming re-decodes often, so speed beats the last 0.x point
    max_batch: int = 8  # streams decoded together in one worker step, at most...
    step_budget: float = 0.5  # ...and as many as the measured cost of a row fits in this many seconds
    partial_busy: float = 0.75  # partial decodes start only while the worker is busy less than this share of the time (1: no limit)
    temperature_fallback: bool = False  # decode again hotter when a window looks repetitive or unlikely
    # Seconds of silence encoded after a decode's audio, the window rounded up to 5 s (0: whole
    # 30 s windows, as offline): a shorter window makes the encoder, most of a decode, cheaper.
    # A final decode, which fixes an utterance's last words, always hears a whole window.
    encoder_padding: float = 10.0
    # Tokens a decode may sample per second of its window (+16), forced and timestamps included
    # (speech takes at most ~6): a decode caught in a loop stops there instead of at 224 tokens.
    max_token_rate: float = 12.0

    def __post_init__(self) -> None:
        _check(bool(self.model), "model.model must not be empty")
        _check(self.device in DEVICES, f"model.device must be one of {DEVICES}, got {self.device!r}")
        _check(self.dtype in DTYPES, f"model.dtype must be one of {DTYPES}, got {self.dtype!r}")
        _check(self.threads >= 0, f"model.threads must be >= 0, got {self.threads}")
        _check(self.file_threads >= 0, f"model.file_threads must be >= 0, got {self.file_threads}")
        _check(self.beam_size >= 1, f"model.beam_size must be >= 1, got {self.beam_size}")
        _check(self.max_batch >= 1, f"model.max_batch must be >= 1, got {self.max_batch}")
        _check(self.step_budget > 0, f"model.step_budget must be > 0 s, got {self.step_budget}")
        _check(0 < self.partial_busy <= 1, f"model.partial_busy must be in (0, 1], got {self.partial_busy}")
        _check(self.max_token_rate > 0, f"model.max_token_rate must be > 0, got {self.max_token_rate}")
        _check(
            self.encoder_padding == 0 or MIN_ENCODER_PADDING <= self.encoder_padding <= 30,
            f"model.encoder_padding must be 0 or in {MIN_ENCODER_PADDING:g}..30 s, got {self.encoder_padding}",
        )


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad 0 (least) .. 3 (most eager to call audio non-speech)
    speech_start: float = 0.15  # seconds of mostly-voiced audio before speech starts
    preroll: float = 0.3  # seconds kept before the detected speech start (onsets are soft)

    def __post_init__(self) -> None:
        _check(0 <= self.aggressiveness <= 3, f"vad.aggressiveness must be 0..3, got {self.aggressiveness}")
        _check(0.03 <= self.speech_start <= 2.0, f"vad.speech_start must be in 0.03..2 s, got {self.speech_start}")
        _check(0.0 <= self.preroll <= 2.0, f"vad.preroll must be in 0..2 s, got {self.preroll}")


@dataclass(frozen=True)
class StreamConfig:
    tick_interval: float = 0.3  # least seconds of new audio between two decodes of one stream
    first_tick: float = 0.5  # seconds of speech before an utterance's first decode (shorter rarely gives text)
    endpoint_silence: float = 0.4  # silence after speech that commits everything pending
    max_buffer: float = 25.0  # commit at once when the uncommitted audio reaches this (< 30 s window)
    trim_after: float = 20.0  # a longer buffer is cut after its last committed word even mid-segment
    agreement_margin: float = 1.0  # seconds of audio a word must be followed by before agreement commits it
    agreement_gap: float = 0.6  # seconds of audio at least between two decodes that agree (local agreement)
    overlap: float = 10.0  # seconds of committed words kept at the buffer's start, forced as the decoder's context
    max_session_seconds: float = 4 * 3600.0  # stream length limit (close 4408)
    prompt_chars: int = 200  # committed text given back to the decoder as the previous context
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    # With no_speech_prob over its threshold, text whose mean word probability is below this is noise.
    doubtful_word_probability: float = 0.5
    resume_window: float = 60.0  # seconds a dropped stream waits for a resume (0: no resume)
    # When text becomes stable (streamer.stream.policy): "local-agreement" commits the words the
    # last `local_agreement_n` decodes agree on; "alignatt" the words one decode attends to more
    # than `alignatt_margin` s before the audio's end. A stream's `start` may choose another.
    commit_policy: str = "local-agreement"
    local_agreement_n: int = 2
    alignatt_margin: float = 0.5  # s (SimulStreaming's 25 frames of 20 ms)
    # The stream rules' tunables (streamer/stream/): each names the rule it tunes.
    endpoint_margin: float = 0.1  # s a decode must have heard past the end of speech to stand for the final one
    edge_margin: float = 0.05  # s: at an endpoint, a word ending this close to a window's end may be cut by it
    unheard_tail: float = 0.6  # s of speech after a final decode's last word that are decoded once more
    retry_overlap: float = 0.5  # s (at most half `overlap`) of committed words kept before that tail
    merged_overlap: float = 0.3  # s a final decode's first new word may start before the committed words end
    unheard_word: float = 0.02  # s: a word aligned to less than this was not found in the audio...
    unheard_run: int = 2  # ...and this many such words in a row were made up, not heard
    max_word_seconds: float = 1.5  # a committed word "longer" than this was stretched by the alignment
    context_pause: float = 3.0  # s of pause after which the last utterance is no longer the next one's context
    sentence_pause: float = 2.0  # s of pause after which the mark held back from the last stable word is sent (the sentence ended)

    def __post_init__(self) -> None:
        _check(0.05 <= self.tick_interval <= 10.0, f"stream.tick_interval must be in 0.05..10 s, got {self.tick_interval}")
        _check(0.05 <= self.first_tick <= 10.0, f"stream.first_tick must be in 0.05..10 s, got {self.first_tick}")
        _check(0.1 <= self.endpoint_silence <= 10.0, f"stream.endpoint_silence must be in 0.1..10 s, got {self.endpoint_silence}")
        _check(2.0 <= self.max_buffer <= 29.0, f"stream.max_buffer must be in 2..29 s, got {self.max_buffer}")
        _check(0.0 <= self.overlap <= self.trim_after / 2, f"stream.overlap must be in 0..trim_after/2 s, got {self.overlap}")
        _check(0.0 <= self.agreement_margin <= 3.0, f"stream.agreement_margin must be in 0..3 s, got {self.agreement_margin}")
        _check(0.0 <= self.agreement_gap <= 3.0, f"stream.agreement_gap must be in 0..3 s, got {self.agreement_gap}")
        _check(1.0 <= self.trim_after <= self.max_buffer, f"stream.trim_after must be in 1..max_buffer s, got {self.trim_after}")
        _check(self.max_session_seconds > 0, f"stream.max_session_seconds must be > 0, got {self.max_session_seconds}")
        _check(self.prompt_chars >= 0, f"stream.prompt_chars must be >= 0, got {self.prompt_chars}")
        _check(0.0 <= self.no_speech_threshold <= 1.0, f"stream.no_speech_threshold must be in 0..1, got {self.no_speech_threshold}")
        _check(self.compression_ratio_threshold > 1.0, "stream.compression_ratio_threshold must be > 1")
        _check(0.0 <= self.doubtful_word_probability <= 1.0, "stream.doubtful_word_probability must be in 0..1")
        _check(0.0 <= self.resume_window <= 3600.0, f"stream.resume_window must be in 0..3600 s, got {self.resume_window}")
        _check(self.commit_policy in COMMIT_POLICIES, f"stream.commit_policy must be one of {COMMIT_POLICIES}, got {self.commit_policy!r}")
        _check(2 <= self.local_agreement_n <= 10, f"stream.local_agreement_n must be in 2..10, got {self.local_agreement_n}")
        _check(0.0 <= self.alignatt_margin <= 5.0, f"stream.alignatt_margin must be in 0..5 s, got {self.alignatt_margin}")
        for name in ("endpoint_margin", "edge_margin", "unheard_tail", "retry_overlap", "merged_overlap", "unheard_word", "max_word_seconds", "context_pause", "sentence_pause"):
            _check(0.0 <= getattr(self, name) <= 30.0, f"stream.{name} must be in 0..30 s, got {getattr(self, name)}")
        _check(self.unheard_run >= 1, f"stream.unheard_run must be >= 1, got {self.unheard_run}")


@dataclass(frozen=True)
class LanguageConfig:
    """How `auto` decides a stream's language (see `streamer.stream.language_decider`)."""

    languages: str = ""  # comma-separated codes detection chooses among ("es,en"); empty: any; one: no detection
    min_speech: float = 2.5  # voiced seconds heard before the language may be decided...
    confidence: float = 0.8  # ...and the share of the evidence its top language must hold
    switch_speech: float = 3.0  # voiced seconds of another language needed to switch (base reads 2.3 s of Spanish as Portuguese)
    switch_confidence: float = 0.9  # ...and its share of them
    recheck_utterances: int = 2  # at most this many recent utterances make that evidence
    max_hold: float = 6.0  # seconds after the first speech when the language is decided on what there is

    def __post_init__(self) -> None:
        for code in self.language_list:
            _check(code.isalpha() and 2 <= len(code) <= 3, f"language.languages: not a language code: {code!r}")
        _check(0.0 <= self.min_speech <= 20.0, f"language.min_speech must be in 0..20 s, got {self.min_speech}")
        _check(0.0 < self.confidence <= 1.0, f"language.confidence must be in (0, 1], got {self.confidence}")
        _check(0.0 < self.switch_speech <= 30.0, f"language.switch_speech must be in (0, 30] s, got {self.switch_speech}")
        _check(0.0 < self.switch_confidence <= 1.0, f"language.switch_confidence must be in (0, 1], got {self.switch_confidence}")
        _check(1 <= self.recheck_utterances <= 10, f"language.recheck_utterances must be in 1..10, got {self.recheck_utterances}")
        # Held text stays in the buffer, which commits when full (stream.max_buffer, at least 2 s).
        _check(0.5 <= self.max_hold <= 20.0, f"language.max_hold must be in 0.5..20 s, got {self.max_hold}")

    @property
    def language_list(self) -> tuple[str, ...]:
        return tuple(c.strip().lower() for c in self.languages.split(",") if c.strip())


@dataclass(frozen=True)
class AuthConfig:
    # TOML [[key]] tables (id, sha256 or secret, origins, max_streams); keys also come from the
    # WHISPER_STREAMER_API_KEYS environment variable ("id:secret,id2:sha256:HEX"). No key at all:
    # authentication is off and the daemon listens on loopback only.
    keys_file: str = ""
    allowed_origins: str = ""  # comma-separated browser origins for keys that list none; "*" = any
    token_ttl: float = 300.0  # seconds a browser token from POST /v1/token is valid

    def __post_init__(self) -> None:
        _check(not self.keys_file or Path(self.keys_file).expanduser().is_file(), f"auth.keys_file: file not found: {self.keys_file}")
        _check(10.0 <= self.token_ttl <= 86400.0, f"auth.token_ttl must be in 10..86400 s, got {self.token_ttl}")


@dataclass(frozen=True)
class JournalConfig:
    directory: str = "~/.local/state/whisper-streamer/journal"  # one JSON-lines file per session
    retention_days: float = 30.0  # journals untouched for longer are deleted

    def __post_init__(self) -> None:
        _check(bool(self.directory), "journal.directory must not be empty")
        _check(self.retention_days > 0, f"journal.retention_days must be > 0, got {self.retention_days}")


STORE_BACKENDS = ("local", "redis")


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "local"  # local: streams resume on this daemon only | redis: on any replica sharing `url`
    url: str = "redis://127.0.0.1:6379/0"
    ttl: float = 86400.0  # seconds a session's committed state is kept after its last write (redis)
    replica: str = ""  # this daemon's name as a stream's owner (empty: host, pid and a random suffix)

    def __post_init__(self) -> None:
        _check(self.backend in STORE_BACKENDS, f"store.backend must be one of {list(STORE_BACKENDS)}, got {self.backend!r}")
        _check(self.url.startswith(("redis://", "rediss://", "unix://")), f"store.url must be a redis:// URL, got {self.url!r}")
        _check(self.ttl >= 1.0, f"store.ttl must be >= 1 s, got {self.ttl}")


@dataclass(frozen=True)
class DeepgramConfig:
    idle_timeout: float = 10.0  # seconds without any frame (audio or KeepAlive) before close 1011 NET-0001

    def __post_init__(self) -> None:
        _check(0.1 <= self.idle_timeout <= 3600.0, f"deepgram.idle_timeout must be in 0.1..3600 s, got {self.idle_timeout}")


@dataclass(frozen=True)
class OpenAIConfig:
    max_upload_bytes: int = 25 * 1000 * 1000  # POST /v1/audio/* bodies above this get 413 (OpenAI's own limit)
    max_uploads: int = 2  # uploads transcribed at once; more get 429

    def __post_init__(self) -> None:
        _check(self.max_upload_bytes >= 1024, f"openai.max_upload_bytes must be >= 1024, got {self.max_upload_bytes}")
        _check(self.max_uploads >= 1, f"openai.max_uploads must be >= 1, got {self.max_uploads}")


@dataclass(frozen=True)
class WyomingConfig:
    uri: str = ""  # tcp://HOST:PORT for Home Assistant's Wyoming protocol; empty: off

    def __post_init__(self) -> None:
        _check(not self.uri or self.uri.startswith("tcp://"), f"wyoming.uri must be tcp://HOST:PORT or empty, got {self.uri!r}")


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    deepgram: DeepgramConfig = field(default_factory=DeepgramConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _scalar_type(section: type, name: str) -> type:
    hint = typing.get_type_hints(section)[name]
    if isinstance(hint, types.UnionType):  # not used today; keeps flags honest if one appears
        raise TypeError(f"{section.__name__}.{name}: union types are not supported as flags")
    return hint


def _coerce(value: Any, kind: type, where: str) -> Any:
    # TOML gives ints for floats written without a dot ("port = 0", "tick_interval = 1").
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and isinstance(value, str):
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected a boolean, got {value!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def config_from_mapping(data: dict[str, Any]) -> Config:
    """Builds a `Config` from a TOML-shaped mapping; unknown sections or keys are errors."""
    sections = _sections()
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    built = {}
    for name, section in sections.items():
        values = data.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        known = {f.name for f in dataclasses.fields(section)}
        bad = set(values) - known
        if bad:
            raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(bad))}")
        kwargs = {k: _coerce(v, _scalar_type(section, k), f"{name}.{k}") for k, v in values.items()}
        built[name] = section(**kwargs)
    return Config(**built)


def _flag_names() -> dict[tuple[str, str], list[str]]:
    """(section, field) → its flags: always `--section.field-name`, plus `--field-name` when unique."""
    counts: dict[str, int] = {}
    for section in _sections().values():
        for f in dataclasses.fields(section):
            counts[f.name] = counts.get(f.name, 0) + 1
    flags = {}
    for section_name, section in _sections().items():
        for f in dataclasses.fields(section):
            dashed = f.name.replace("_", "-")
            names = [f"--{section_name}.{dashed}"]
            if counts[f.name] == 1:
                names.append(f"--{dashed}")
            flags[(section_name, f.name)] = names
    return flags


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streamer",
        description="whisper-streamer: real-time speech transcription over WebSocket (protocol v1).",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML file (see config.toml)")
    for (section_name, name), names in _flag_names().items():
        section = _sections()[section_name]
        kind = _scalar_type(section, name)
        default = next(f for f in dataclasses.fields(section) if f.name == name)
        shown = default.default
        parser.add_argument(
            *names,
            dest=f"{section_name}.{name}",
            type=str if kind is bool else kind,
            default=None,
            metavar=kind.__name__.upper(),
            help=f"[{section_name}] {name} (default {shown!r})",
        )
    return parser


def read_toml(path: str | Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """The TOML file at `path`; `error` naming it (`what`, the path) when it is absent or not TOML."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise error(f"{what} not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}") from exc


def load_config(path: Path | None = None, argv: Sequence[str] = ()) -> Config:
    """Reads `path` (or the `--config` flag in `argv`), then applies every flag in `argv` on top."""
    args = build_arg_parser().parse_args(list(argv))
    path = args.config if args.config is not None else path
    data = read_toml(path, "config file", ConfigError) if path is not None else {}
    for key, value in vars(args).items():
        if key == "config" or value is None:
            continue
        section_name, name = key.split(".", 1)
        data.setdefault(section_name, {})
        if not isinstance(data[section_name], dict):
            raise ConfigError(f"[{section_name}] must be a table")
        data[section_name] = {**data[section_name], name: value}
    return config_from_mapping(data)
