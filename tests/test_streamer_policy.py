"""The commit policy is chosen by name: in config.toml (`stream.commit_policy`,
`stream.local_agreement_n`) and per stream in `start`; an unknown name is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamer.config import Config, ConfigError, StreamConfig, load_config
from streamer.stream.commit import AlignAtt, LocalAgreement
from streamer.stream.policy import commit_count, make_policy
from streamer.stream.session import ModelInfo, Session
from streamer.stream.tick import Word
from wire import CloseCode, ProtocolError, Stable, Start, parse_start

ENGLISH = ModelInfo("tiny.en", multilingual=False)


def words(text: str, start: float = 0.0) -> list[Word]:
    return [Word(" " + w, start + i * 0.5, start + i * 0.5 + 0.4, 0.9) for i, w in enumerate(text.split())]


def test_local_agreement_n_is_how_many_decodes_must_agree() -> None:
    # Each hypothesis is of the uncommitted audio (the session drops the committed words).
    scripts = {2: ["ask not", "ask not what", "what your"], 3: ["ask not", "ask not what", "ask not what your"]}
    for n, hypotheses in scripts.items():
        policy = make_policy("local-agreement", StreamConfig(local_agreement_n=n))
        assert isinstance(policy, LocalAgreement)
        counts = [policy.decide(words(text), final=False) for text in hypotheses]
        # The first decodes have nothing to agree with; the n-th is the first that commits.
        assert counts == ([0, 2, 1] if n == 2 else [0, 0, 2])


def test_commit_count_leaves_words_near_the_windows_end_and_after_the_endpoint() -> None:
    policy = make_policy("local-agreement", StreamConfig(agreement_margin=1.0, agreement_gap=0.0))  # two decodes of one window
    heard = words("and so my fellow americans")  # ends at 2.4 s
    assert commit_count(policy, heard, final=False, until=None, truncated=False, window_end=2.5) == 0
    assert commit_count(policy, heard, final=False, until=None, truncated=False, window_end=2.5) == 3
    policy.reset()
    assert commit_count(policy, heard, final=True, until=1.2, truncated=False, window_end=2.5) == 3
    assert commit_count(policy, heard, final=True, until=None, truncated=True, window_end=2.5) == 4


def test_alignatt_commits_the_words_attended_more_than_the_margin_before_the_audios_end() -> None:
    policy = make_policy("alignatt", StreamConfig(alignatt_margin=0.5))
    assert isinstance(policy, AlignAtt)
    heard = words("ask not what your country")  # words end at 0.4, 0.9, 1.4, 1.9, 2.4 s
    # One decode suffices, no agreement; a word attended near the audio's end waits.
    assert policy.decide(heard, final=False, window_end=2.5) == 4
    assert policy.decide(heard, final=False, window_end=2.35) == 3  # "your" ends 0.45 s before
    assert policy.decide(heard, final=False, window_end=2.95) == 5
    assert policy.decide(heard[:1], final=False, window_end=0.5) == 0
    assert policy.decide(heard, final=True, window_end=0.5) == 5  # a final decode commits all
    changed = words("ask not what you can")  # a later decode that hears it otherwise: its own verdict
    assert policy.decide(changed, final=False, window_end=2.35) == 3
    assert commit_count(policy, heard, final=True, until=1.2, truncated=False, window_end=2.5) == 3


def test_unknown_policy_is_a_config_error_from_the_file_or_a_flag(tmp_path) -> None:
    with pytest.raises(ConfigError, match="commit_policy"):
        StreamConfig(commit_policy="nope")
    with pytest.raises(ConfigError, match="local_agreement_n"):
        StreamConfig(local_agreement_n=1)
    path = tmp_path / "c.toml"
    path.write_text('[stream]\ncommit_policy = "local-agreement"\nlocal_agreement_n = 3\n')
    assert load_config(path).stream.local_agreement_n == 3
    assert load_config(None, ["--local-agreement-n", "4"]).stream.local_agreement_n == 4
    with pytest.raises(ConfigError, match="commit_policy"):
        load_config(None, ["--stream.commit-policy", "alignment"])


def test_start_chooses_the_policy_and_an_unknown_one_closes_that_stream_only() -> None:
    assert parse_start({"type": "start", "commit_policy": "alignatt"}).commit_policy == "alignatt"
    assert parse_start({"type": "start"}).commit_policy == ""
    with pytest.raises(ProtocolError) as error:
        Session("s1", Start(commit_policy="wait-k"), Config(), ENGLISH)
    assert error.value.code == CloseCode.UNSUPPORTED and "wait-k" in str(error.value)
    Session("s2", Start(commit_policy="alignatt"), Config(), ENGLISH)  # the next stream goes on


def test_a_stream_commits_later_with_more_decodes_to_agree() -> None:
    """The session uses the configured n: with n=3 a word agreed on mid-utterance needs a third
    decode (the first word, " Mr", is committed at the first pause by both), and the same text
    is stable in the end."""
    from benchmarks.data import clips_of, data_available
    from model.audio import load_audio
    from tests.test_streamer_session import drive, hear, scripted_words

    if not data_available():
        pytest.skip("shared evaluation data not found")
    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    audio = load_audio(clip.path)
    script = scripted_words(clip, 1)
    agreed: dict[int, float] = {}
    texts: dict[int, str] = {}
    for n in (2, 3):
        config = Config(stream=replace(StreamConfig(), local_agreement_n=n))
        produced, _ = drive(Session("s", Start(), config, ENGLISH), audio[: 16000 * 8], lambda r: hear(script, r))
        stables = [(t, m) for t, m in produced if isinstance(m, Stable)]
        agreed[n] = next(t for t, m in stables if "quilter" in m.text)
        texts[n] = "".join(m.text for _, m in stables)
    assert agreed[2] < agreed[3]
    assert texts[2] == texts[3] == "".join(w.text for w in script)


def test_alignatt_commits_a_stream_sooner_and_the_same_text() -> None:
    """Scripted hypotheses through a session: AlignAtt commits mid-utterance words from one
    decode, sooner than LocalAgreement-2, and the stable text is the script either way."""
    from benchmarks.data import clips_of, data_available
    from model.audio import load_audio
    from tests.test_streamer_session import drive, hear, scripted_words

    if not data_available():
        pytest.skip("shared evaluation data not found")
    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    audio = load_audio(clip.path)[: 16000 * 8]
    script = scripted_words(clip, 1)
    agreed: dict[str, float] = {}
    for name in ("local-agreement", "alignatt"):
        produced, _ = drive(Session("s", Start(commit_policy=name), Config(), ENGLISH), audio, lambda r: hear(script, r))
        stables = [(t, m) for t, m in produced if isinstance(m, Stable)]
        agreed[name] = next(t for t, m in stables if "quilter" in m.text)
        assert "".join(m.text for _, m in stables) == "".join(w.text for w in script)
        assert [m.id for _, m in stables] == list(range(len(stables)))
    assert agreed["alignatt"] < agreed["local-agreement"]
