"""Replicas sharing a Redis store behind nginx: a stream survives its replica (docs/deploy.md).

Fast tests first (the hand-over plan, the client's kept audio, the nginx template, the store's
ownership); then two slow ones on a real cluster (`benchmarks.cluster`: redis-server, two tiny.en
daemons, Debian's nginx running deploy/nginx.conf): a resume on the other replica after kill -9,
and a drain (SIGTERM) that moves the stream. They skip with a clear message when redis-server
or nginx is not installed (`make system-deps` installs both).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from benchmarks.cluster import (
    NGINX_CONF,
    Cluster,
    MissingProgram,
    Replica,
    free_port,
    render_nginx,
    require,
    wait_until,
)
from benchmarks.data import Clip
from benchmarks.wer import word_error_rate
from clients.audio_file import read_audio
from clients.connection import ConnectOptions, ResumingStream
from clients.pacing import PacingOptions, paced_frames
from clients.protocol import Received, UnacknowledgedAudio
from streamer.state.handover import CONTEXT_REPLAY_S, plan_handover
from streamer.state.store import StoredSession, committed_text, start_from_dict, start_to_dict
from wire import CloseCode, ProtocolError, Stable, Start, WordTiming

from .conftest import clip_by_id

CLIP = "ls_1221-135766-0001"  # 16.7 s, one long sentence: several stable segments


def _segment(i: int, start: float, words: list[str]) -> Stable:
    timings = tuple(WordTiming(f" {w}", start + 0.5 * k, start + 0.5 * k + 0.4, 0.9) for k, w in enumerate(words))
    return Stable(i, timings[0].start, timings[-1].end, "".join(t.word for t in timings), timings, "en")


def test_handover_replays_what_the_client_lacks_and_hears_the_last_words_again() -> None:
    segments = (_segment(0, 0.0, ["one", "two", "three"]), _segment(1, 2.0, ["four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]))
    heard_after = (WordTiming(" eleven", 5.5, 5.9, 0.9), WordTiming(" twelve", 6.1, 6.4, 0.8))  # the owner's last partial
    stored = StoredSession("s" * 12, None, Start(), segments, committed_text(segments, 200), segments[-1].end, heard_after)
    plan = plan_handover(stored, Start(), last_stable_id=0)
    # The commit policy agrees with what the old owner heard after the committed words only.
    assert [w.text for w in plan.pending] == [" twelve"]
    assert [s.id for s in plan.replay] == [1]
    # The last segment's words of its final CONTEXT_REPLAY_S s are heard again as known text...
    assert plan.context and all(w.start >= segments[-1].end - CONTEXT_REPLAY_S for w in plan.context)
    assert plan.context[-1].text == " eleven" and plan.context[-1].ends_segment
    # ...so the prompt is the committed text before them, and the audio resumes just before them.
    assert plan.prompt + "".join(w.text for w in plan.context) == stored.context
    assert plan.resume_seconds < plan.context[0].start < plan.resume_seconds + 0.2
    with pytest.raises(ProtocolError) as beyond:
        plan_handover(stored, Start(), last_stable_id=2)
    assert beyond.value.code == 4400
    with pytest.raises(ProtocolError) as other_format:
        plan_handover(stored, Start(sample_rate=48000), last_stable_id=1)
    assert other_format.value.code == 4415


def test_the_store_keeps_every_option_of_a_stream_and_ignores_keys_it_does_not_know() -> None:
    start = Start(sample_rate=48000, encoding="f32le", channels=2, language="auto", languages=("de", "fr"),
                  events=("vad",), prompt="Kubernetes, nginx", commit_policy="alignatt", word_timestamps=False)
    body = start_to_dict(start)
    assert start_from_dict(body) == start
    assert start_from_dict({**body, "option_of_a_newer_replica": 1}) == start


def test_unacknowledged_audio_keeps_what_follows_the_last_stable_with_a_margin() -> None:
    kept = UnacknowledgedAudio(sample_rate=100, bytes_per_frame=2, margin_s=1.0)
    for second in range(10):
        kept.sent(bytes([second]) * 200)  # one 100-sample chunk per second, its bytes its second
    kept.acknowledge(stable_end=5.5)
    assert kept.kept_from == 4.0  # chunks ending by 4.5 s (5.5 - margin) are dropped, whole
    assert kept.since(6.0) == b"".join(bytes([s]) * 200 for s in range(6, 10))
    assert kept.since(4.5)[:100] == bytes([4]) * 100  # from the middle of a chunk
    assert kept.since(1.0) == kept.since(4.0)  # dropped already: from the oldest kept
    assert kept.since(99.0) == b""


def test_the_cluster_runs_deploy_nginx_conf_with_only_addresses_replaced() -> None:
    template = NGINX_CONF.read_text()
    rendered = render_nginx(template, 9999, [1111, 2222, 3333])
    assert "listen 127.0.0.1:9999;" in rendered and "replica-1" not in rendered
    assert [line.strip() for line in rendered.splitlines() if line.strip().startswith("server 127.")] == [
        "server 127.0.0.1:1111 max_fails=0;", "server 127.0.0.1:2222 max_fails=0;", "server 127.0.0.1:3333 max_fails=0;"
    ]
    for directive in ("least_conn;", "proxy_read_timeout 3600s;", "proxy_set_header Upgrade $http_upgrade;", "location = /readyz"):
        assert directive in rendered


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        program = require("redis-server", "redis-server")
    except MissingProgram as missing:
        pytest.skip(str(missing))
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    try:
        from benchmarks.cluster import _accepts

        wait_until(lambda: _accepts(port), 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def test_redis_store_moves_ownership_atomically(redis_url: str) -> None:
    from streamer.state.redis_store import RedisStore

    async def scenario() -> None:
        first, second = RedisStore(redis_url, 60, "replica-a"), RedisStore(redis_url, 60, "replica-b")
        session = "handover-test-1"
        await first.open(session, "key", Start())
        assert await first.append(session, _segment(0, 0.0, ["hello"]), " hello")  # type: ignore[misc]
        first.note_partial(session, (WordTiming(" wor", 0.5, 0.8, 0.5),))
        await first.flush()
        assert await second.claim(session, "other-key") is None  # another key's session: unknown
        claimed = await second.claim(session, "key")
        assert claimed is not None and [s.text for s in claimed.segments] == [" hello"] and claimed.context == " hello"
        assert claimed.pending == (WordTiming(" wor", 0.5, 0.8, 0.5),) and claimed.committed_seconds == 0.4
        first.note_partial(session, (WordTiming(" stale", 0.5, 0.8, 0.5),))  # not the owner: ignored
        # The old owner, still decoding its parked copy, may not write one more segment...
        assert not await first.append(session, _segment(1, 1.0, ["stale"]), " hello stale")  # type: ignore[misc]
        # ...while the new one goes on after the stored ones.
        assert await second.append(session, _segment(1, 1.0, ["world"]), " hello world")  # type: ignore[misc]
        await first.flush()
        assert (await second.claim(session, "key")).pending == claimed.pending
        second.end(session)
        await second.flush()
        assert await first.claim(session, "key") is None  # ended: not resumable
        await first.close()
        await second.close()

    asyncio.run(scenario())


# ---- a real cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        require("redis-server", "redis-server")
        require("nginx", "nginx")
    except MissingProgram as missing:
        pytest.skip(str(missing))
    # Streams here run 2x real time on shared cores: late decodes must not refuse the next stream.
    with Cluster(tmp_path_factory.mktemp("cluster"), 2, ("--model", "tiny.en", "--threads", "1", "--max-tick-lag", "600")) as running:
        yield running


def _holder(cluster: Cluster) -> Replica:
    holders = [r for r in cluster.nodes if r.metric("streamer_active_streams") > 0]
    assert len(holders) == 1, "the stream should be open on exactly one replica"
    return holders[0]


def _stream_with_disruption(cluster: Cluster, clip: Clip, disrupt: str) -> ResumingStream:
    """Plays `clip` at 2x through nginx; once a stable segment came, kills or drains its replica."""
    audio = read_audio(clip.path)
    first_stable = asyncio.Event()

    def on_message(received: Received) -> None:
        if isinstance(received.message, Stable):
            first_stable.set()

    async def scenario() -> ResumingStream:
        stream = ResumingStream(ConnectOptions(cluster.url), Start(sample_rate=audio.sample_rate, language="en"), on_message)
        task = asyncio.create_task(stream.run(paced_frames(audio, PacingOptions(speed=2.0))))
        await asyncio.wait_for(first_stable.wait(), 30)
        await asyncio.sleep(0.6)  # housekeeping refreshes the active-streams gauge every second
        holder = await asyncio.to_thread(_holder, cluster)
        if disrupt == "kill":
            holder.kill()
        else:
            holder.terminate()
        await asyncio.wait_for(task, 120)
        await asyncio.to_thread(holder.wait_exit, 60)
        await asyncio.to_thread(holder.start)  # back for the next test
        await asyncio.to_thread(holder.wait_ready)
        return stream

    return asyncio.run(scenario())


def _stored_texts(cluster: Cluster, session_id: str) -> list[str]:
    import json

    from redis import Redis

    with Redis.from_url(cluster.redis_url, decode_responses=True) as redis:
        return [json.loads(s)["text"] for s in redis.lrange(f"whisper-streamer:segments:{session_id}", 0, -1)]


def _check_nothing_lost(cluster: Cluster, stream: ResumingStream, clip: Clip) -> None:
    assert [s.id for s in stream.stable] == list(range(len(stream.stable)))
    assert stream.session_id is not None
    # Exactly what the store committed for the session, across both replicas: none lost, none twice.
    assert [s.text for s in stream.stable] == _stored_texts(cluster, stream.session_id)
    text = "".join(s.text for s in stream.stable)
    assert word_error_rate([clip.text], [text]) <= 0.10, text  # the clip alone: ~4 %


@pytest.mark.slow
def test_a_stream_resumes_on_the_other_replica_after_kill_9(cluster: Cluster, shared_data: list[Clip]) -> None:
    clip = clip_by_id(shared_data, CLIP)
    stream = _stream_with_disruption(cluster, clip, "kill")
    assert [r.close_code for r in stream.resumes] == [1006]
    assert stream.resumes[0].replayed_seconds > 0  # what the dead replica had not committed was sent again
    _check_nothing_lost(cluster, stream, clip)


@pytest.mark.slow
def test_sigterm_drains_the_replica_and_the_stream_moves(cluster: Cluster, shared_data: list[Clip]) -> None:
    clip = clip_by_id(shared_data, CLIP)
    started = time.monotonic()
    stream = _stream_with_disruption(cluster, clip, "drain")
    assert [r.close_code for r in stream.resumes] == [CloseCode.MOVED]
    assert stream.resumes[0].lost_at > started
    _check_nothing_lost(cluster, stream, clip)


def test_missing_programs_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingProgram, match="apt-get install no-such-package"):
        require("no-such-program-here", "no-such-package")


@pytest.mark.slow
def test_an_unreachable_redis_stops_the_daemon_at_start_with_exit_2() -> None:
    import sys

    from benchmarks.cluster import ROOT

    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "streamer", "--port", "0", "--store.backend", "redis", "--store.url", dead],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2 and "cannot reach Redis" in result.stderr
    assert "listening on" not in result.stdout  # it never accepted a connection


def _stored_sessions(cluster: Cluster) -> list[list[str]]:
    import json

    from redis import Redis

    with Redis.from_url(cluster.redis_url, decode_responses=True) as redis:
        keys = list(redis.scan_iter("whisper-streamer:segments:*"))
        return [[json.loads(s)["text"] for s in redis.lrange(key, 0, -1)] for key in keys]


@pytest.mark.slow
def test_the_browser_page_resumes_on_the_other_replica(cluster: Cluster, shared_data: list[Clip], tmp_path: Path) -> None:
    """The caption page, served and streamed through nginx: kill -9 of its replica mid-clip; the
    page reconnects, resumes on the other replica, resends the audio it kept, and shows exactly
    the segments the store committed for its session."""
    from tests.test_browser import chromium, page, settled_text

    clip = clip_by_id(shared_data, CLIP)

    async def scenario(address: str) -> tuple[Replica, str, list[str]]:
        async with page(address) as tab:
            began = time.monotonic()
            while not await tab.evaluate("window.captionPage.segments.length > 0"):
                assert time.monotonic() - began < 60, await tab.evaluate("document.querySelector('#status').textContent")  # why none came
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.6)  # the active-streams gauge is refreshed every second
            holder = await asyncio.to_thread(_holder, cluster)
            holder.kill()
            stable = await settled_text(tab, "document.querySelector('#stable').textContent", clip.duration_s, 4.0, clip.duration_s + 120)
            return holder, stable, await tab.evaluate("window.captionPage.segments.map(s => s.text)")

    with chromium(f"http://127.0.0.1:{cluster.nginx_port}/?autostart=1", clip.path, tmp_path / "profile") as address:
        holder, stable, texts = asyncio.run(scenario(address))
    holder.start()
    holder.wait_ready()
    assert word_error_rate([clip.text], [stable]) <= 0.10, stable
    assert texts in _stored_sessions(cluster), texts  # none lost, none twice, across both replicas


@pytest.mark.parametrize("moment", [0.3, 0.5, 0.8])
def test_a_stream_continued_from_the_store_loses_and_repeats_no_word(moment: float) -> None:
    """In virtual time, with the scripted stand-in for the model of test_streamer_session: a
    session is cut mid-utterance (what a kill -9 leaves in the store: its segments and its last
    partial), a new session continues it from the store's state with the audio from where its
    `ready` says, and the two sessions' stable text is the script once, ids contiguous."""
    from benchmarks.data import clips_of, data_available
    from model.audio import SAMPLE_RATE, load_audio
    from streamer.config import Config
    from streamer.stream.session import Session
    from tests.test_streamer_session import ENGLISH, drive, hear, scripted_words
    from wire import Partial

    if not data_available():
        pytest.skip("shared evaluation data not found")
    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    audio = load_audio(clip.path)[: int(clip.segments[3].start_s * SAMPLE_RATE)]  # three utterances
    script = scripted_words(clip, 3)
    cut = clip.segments[1].start_s + moment * (clip.segments[1].end_s - clip.segments[1].start_s)
    start, config = Start(events=("vad",)), Config()

    first = Session("moved-session", start, config, ENGLISH)
    produced, _ = drive(first, audio[: int(cut * SAMPLE_RATE)], lambda r: hear(script, r), stop=False)
    stables = [m for _, m in produced if isinstance(m, Stable)]
    partials = [m for _, m in produced if isinstance(m, Partial)]
    assert stables, "something was committed before the cut"
    stored = StoredSession("moved-session", None, start, tuple(stables), committed_text(stables, config.stream.prompt_chars),
                           stables[-1].end, partials[-1].words if partials else ())
    plan = plan_handover(stored, start, last_stable_id=len(stables) - 1)

    second = Session("moved-session", start, config, ENGLISH)
    resume_at = second.continue_at(plan.resume_seconds, stored.next_stable_id, plan.prompt, plan.language, plan.context, plan.pending)
    assert resume_at <= plan.resume_seconds < stables[-1].end
    produced, requests = drive(second, audio[round(resume_at * SAMPLE_RATE) :], lambda r: hear(script, r))
    assert requests[0].window_start == resume_at and requests[0].context == plan.context
    more = [m for _, m in produced if isinstance(m, Stable)]
    assert [s.id for s in stables + more] == list(range(len(stables) + len(more)))
    assert "".join(s.text for s in stables + more).split() == [w.text.strip() for w in script]
    assert all(a.end <= b.start for a, b in zip(stables + more, (stables + more)[1:]))


@pytest.mark.slow
def test_a_failing_audio_source_ends_the_resuming_stream_with_its_error(daemon_url: str, shared_data: list[Clip]) -> None:
    """Against the single shared daemon (local store): the session stops and the source's error
    reaches the caller, rather than the stream waiting for audio that never comes."""
    audio = read_audio(clip_by_id(shared_data, CLIP).path)

    async def frames() -> AsyncIterator[bytes]:
        async for frame in paced_frames(audio, PacingOptions(speed=0)):
            yield frame
            raise OSError("microphone unplugged")  # one frame, then the microphone goes away

    async def scenario() -> None:
        stream = ResumingStream(ConnectOptions(daemon_url), Start(sample_rate=audio.sample_rate), lambda received: None)
        await asyncio.wait_for(stream.run(frames()), 60)

    with pytest.raises(OSError, match="microphone unplugged"):
        asyncio.run(scenario())
