"""The browser caption page in headless Chromium against the real daemon.

Chromium's fake microphone plays a shared clip once; the page captures it with its AudioWorklet,
streams it over the protocol and shows captions. The test reads `#stable` over the DevTools
protocol, scores it against the clip's reference, checks the page's SRT download, and saves
screenshots to out/. The page's JS caption writers are also checked under Node when present.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.data import Clip
from benchmarks.wer import word_error_rate
from tests.test_clients_fake_server import FakeDaemon, ScriptSegment
from tests.test_writers import LONG, assert_caption_rules, parse_srt, parse_vtt

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "streamer" / "static"
OUT = ROOT / "out"
CLIP_ID = "lj_LJ001-0001"  # ~10 s of clear read speech
pytestmark = pytest.mark.slow


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@contextmanager
def chromium(url: str, fake_audio: Path, profile: Path, allow_microphone: bool = True) -> Iterator[str]:
    """Headless Chromium showing `url`, with `fake_audio` as its microphone; yields the DevTools HTTP address."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; `make system-deps`)")
    profile.mkdir(parents=True, exist_ok=True)
    permission = "--use-fake-ui-for-media-stream" if allow_microphone else "--deny-permission-prompts"
    with (profile / "chromium.log").open("w") as log:
        process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", permission,
             "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={fake_audio}%noloop",
             "--autoplay-policy=no-user-gesture-required", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "--window-size=900,700", url],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:
        # Chromium writes its DevTools port to this file once it listens.
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active_port.is_file() and active_port.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (exit {process.poll()}): {(profile / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"127.0.0.1:{active_port.read_text().split()[0]}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._websocket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._websocket.recv())
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"]))


@asynccontextmanager
async def page(devtools_address: str) -> AsyncIterator[DevTools]:
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"http://{devtools_address}/json/list", timeout=10) as reply:
            pages = [t for t in json.load(reply) if t["type"] == "page"]
        if pages or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert pages, "Chromium shows no page"
    async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as websocket:
        tab = DevTools(websocket)
        while not await tab.evaluate("document.readyState === 'complete' && document.querySelector('#stable') !== null"):
            assert time.monotonic() < deadline + 30, "the page did not load"
            await asyncio.sleep(0.2)
        yield tab


@pytest.fixture(scope="module")
def http_url(request: pytest.FixtureRequest) -> str:
    try:
        daemon = request.getfixturevalue("daemon")
    except pytest.FixtureLookupError:
        pytest.skip("no `daemon` fixture in tests/conftest.py (the real daemon)")
    return daemon.http_url


async def settled_text(tab: DevTools, selector_js: str, after_s: float, quiet_s: float, limit_s: float) -> str:
    """The expression's value once `after_s` has passed and it has been non-empty and unchanged for `quiet_s`."""
    began = time.monotonic()
    text, changed = "", began
    while time.monotonic() - began < limit_s:
        now_text = await tab.evaluate(selector_js)
        if now_text != text:
            text, changed = now_text, time.monotonic()
        elif text and time.monotonic() - began >= after_s and time.monotonic() - changed >= quiet_s:
            break
        await asyncio.sleep(0.25)
    return text


def test_page_captions_the_microphone(http_url: str, shared_data: list[Clip], tmp_path: Path) -> None:
    speech = next(c for c in shared_data if c.id == CLIP_ID)

    async def scenario(address: str) -> tuple[str, str, str, str]:
        async with page(address) as tab:
            # The fake microphone plays the clip once; the daemon (2 shared CPUs) may lag behind it.
            stable = await settled_text(tab, "document.querySelector('#stable').textContent", speech.duration_s + 2, 4.0, speech.duration_s + 120)
            await tab.screenshot(OUT / "browser.png")
            language = await tab.evaluate("document.querySelector('#language').textContent")
            # Stop: the daemon finalises what is pending, and the page settles.
            await tab.evaluate("document.querySelector('#toggle').click()")
            status = await settled_text(tab, "document.querySelector('#status').textContent", 0, 1.0, 60)
            final = await tab.evaluate("document.querySelector('#stable').textContent")
            return stable, final, language, status + "\n" + await tab.evaluate("window.captionPage.srt()")

    with chromium(f"{http_url}/?autostart=1", speech.path, tmp_path / "profile") as address:
        stable, final, language, status_and_srt = asyncio.run(scenario(address))
    status, srt = status_and_srt.split("\n", 1)
    assert word_error_rate([speech.text], [stable]) <= 0.10, stable
    assert final.startswith(stable)  # stable text is never revised
    assert language == "en"
    assert status.startswith("Stopped"), status
    cues = parse_srt(srt)
    assert_caption_rules(cues)
    assert word_error_rate([speech.text], [" ".join(" ".join(c.lines) for c in cues)]) <= 0.10


def test_overlay_mode_shows_the_last_two_lines_on_chroma(http_url: str, shared_data: list[Clip], tmp_path: Path) -> None:
    speech = next(c for c in shared_data if c.id == CLIP_ID)

    async def scenario(address: str) -> dict[str, Any]:
        async with page(address) as tab:
            # An overlay starts by itself (OBS has nobody to press Start).
            await settled_text(tab, "document.querySelector('#stable').textContent", speech.duration_s + 2, 4.0, speech.duration_s + 120)
            await tab.screenshot(OUT / "overlay.png")
            return await tab.evaluate(
                "(() => { const box = document.querySelector('#captions'), style = getComputedStyle(box);"
                " return {background: getComputedStyle(document.body).backgroundColor,"
                " toggleShown: document.querySelector('#toggle').offsetParent !== null,"
                " lines: box.clientHeight / parseFloat(style.lineHeight),"
                " overflowing: box.querySelector('.flow').offsetHeight > box.clientHeight,"
                " words: document.querySelector('#stable').textContent.split(/\\s+/).length}; })()"
            )

    with chromium(f"{http_url}/?overlay=1&chroma=00ff00", speech.path, tmp_path / "profile") as address:
        state = asyncio.run(scenario(address))
    assert state["background"] == "rgb(0, 255, 0)"
    assert state["toggleShown"] is False
    assert 1.9 <= state["lines"] < 2.5, state  # room for exactly two lines of captions
    assert state["words"] > 15 and state["overflowing"], state  # more text than fits: only the last lines show


def test_page_reconnects_when_the_daemon_is_lost(shared_data: list[Clip], tmp_path: Path) -> None:
    """Against the protocol fake: the first connection is cut after 2 s of audio (no close frame).

    The page says so, reconnects with backoff, asks to resume (the fake answers 4404), starts a
    fresh session, and keeps both sessions' captions on one timeline. It also speaks JSON mode
    when asked and passes the page's `?token=` on to the websocket.
    """
    speech = next(c for c in shared_data if c.id == CLIP_ID)
    first, second = (ScriptSegment(0.2, 1.0, "before the cut"),), (ScriptSegment(0.2, 1.0, "after the cut"),)

    async def scenario() -> tuple[list[str], str, list[dict[str, Any]], FakeDaemon]:
        async with FakeDaemon(first, second, static_dir=STATIC, drop_first_after_s=2.0).running() as fake:
            with chromium(f"{fake.http_url}/?autostart=1&json=1&token=t%2B1", speech.path, tmp_path / "profile") as address:
                async with page(address) as tab:
                    statuses: list[str] = []
                    began = time.monotonic()
                    stable = ""
                    while time.monotonic() - began < 60 and "after the cut" not in stable:
                        status = await tab.evaluate("document.querySelector('#status').textContent")
                        if not statuses or statuses[-1] != status:
                            statuses.append(status)
                        stable = await tab.evaluate("document.querySelector('#stable').textContent")
                        await asyncio.sleep(0.1)
                    segments = await tab.evaluate("window.captionPage.segments.map(s => ({start: s.start, text: s.text}))")
                    return statuses, stable, segments, fake

    statuses, stable, segments, fake = asyncio.run(scenario())
    assert stable == " before the cut after the cut"
    assert any(s.startswith("Cannot reach the transcription daemon. Reconnecting in") for s in statuses), statuses
    assert statuses[-1].startswith("Listening"), statuses
    assert [s.start["type"] for s in fake.sessions] == ["start"] * 3
    assert "resume" not in fake.sessions[0].start and fake.sessions[1].start["resume"]["session_id"] == "fake-1"
    assert "resume" not in fake.sessions[2].start
    assert all(s.json_mode and s.path == "/v1/stream?token=t%2B1" for s in fake.sessions)
    # The fresh session's time 0 comes after the audio the lost one got.
    assert segments[1]["start"] >= 2.0 + 0.2, segments


def test_page_explains_a_refused_microphone(shared_data: list[Clip], tmp_path: Path) -> None:
    speech = next(c for c in shared_data if c.id == CLIP_ID)

    async def scenario() -> tuple[str, str, FakeDaemon]:
        async with FakeDaemon(static_dir=STATIC).running() as fake:
            with chromium(f"{fake.http_url}/?autostart=1", speech.path, tmp_path / "profile", allow_microphone=False) as address:
                async with page(address) as tab:
                    status = await settled_text(tab, "document.querySelector('#status').textContent", 1.0, 1.0, 30)
                    return status, await tab.evaluate("document.querySelector('#toggle').textContent"), fake

    status, button, fake = asyncio.run(scenario())
    assert status.startswith("Microphone access was refused"), status
    assert button == "Start"
    assert fake.sessions == []  # nothing is streamed without a microphone


def test_page_is_self_contained() -> None:
    """Nothing is fetched from outside the daemon: no absolute URLs in the page's files."""
    for path in STATIC.rglob("*"):
        if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
            text = path.read_text()
            assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed; the page's JS writers are checked under Node")
def test_page_caption_writers_follow_the_limits(tmp_path: Path) -> None:
    module = tmp_path / "captions.mjs"
    module.write_text((STATIC / "captions.js").read_text())
    words = [{"word": f" {w}", "start": 2 + i * 0.4, "end": 2 + i * 0.4 + 0.35, "probability": 0.9} for i, w in enumerate(LONG.split())]
    segments = [
        {"start": 0.0, "end": 2.0, "text": " Good morning.", "words": []},
        {"start": 2.0, "end": 2 + 0.4 * len(words), "text": " " + LONG, "words": words},
        {"start": 1.5, "end": 40.0, "text": " " + LONG, "words": []},  # overlaps the previous ones, no word times
    ]
    script = f"import * as c from {json.dumps(str(module))}; const s = {json.dumps(segments)};" \
             "console.log(JSON.stringify({srt: c.toSRT(s), vtt: c.toVTT(s), txt: c.toTXT(s)}));"  # fmt: skip
    result = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True, timeout=60)
    files = json.loads(result.stdout)
    for cues in (parse_srt(files["srt"]), parse_vtt(files["vtt"])):
        assert_caption_rules(cues)
        said = " ".join(" ".join(c.lines) for c in cues)
        assert said == f"Good morning. {LONG} {LONG}"
    assert files["srt"].startswith("1\n00:00:00,000 --> 00:00:02,000\nGood morning.\n\n")
    assert files["txt"] == f"Good morning.\n{LONG}\n{LONG}\n"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed; the capture worklet is checked under Node")
@pytest.mark.parametrize("input_rate", [48000, 44100, 16000])
def test_capture_worklet_resamples_without_aliasing(tmp_path: Path, input_rate: int) -> None:
    """The worklet at a device rate: 1 kHz must survive intact, 11 kHz (above 8 kHz) must not fold back into the speech band."""
    import numpy as np

    module = tmp_path / "worklet.mjs"
    module.write_text((STATIC / "capture-worklet.js").read_text())
    script = f"""
      const posted = [];
      globalThis.sampleRate = {input_rate};
      globalThis.AudioWorkletProcessor = class {{ constructor() {{ this.port = {{ postMessage: (m) => posted.push(m) }}; }} }};
      let Processor = null;
      globalThis.registerProcessor = (name, cls) => {{ Processor = cls; }};
      await import({json.dumps(str(module))});
      const node = new Processor({{ processorOptions: {{ targetRate: 16000, frameSamples: 640 }} }});
      const tone = (f, n) => 0.4 * Math.sin(2 * Math.PI * f * n / sampleRate);
      for (let start = 0; start < sampleRate * 2; start += 128) {{
        const left = new Float32Array(128), right = new Float32Array(128);
        for (let i = 0; i < 128; i++) {{ left[i] = tone(1000, start + i) + (sampleRate > 22000 ? tone(11000, start + i) : 0); right[i] = left[i]; }}
        node.process([[left, right]]);
      }}
      const frames = posted.filter((m) => m.type === "audio");
      const samples = frames.flatMap((m) => Array.from(new Int16Array(m.pcm)));
      console.log(JSON.stringify({{ sizes: [...new Set(frames.map((m) => m.pcm.byteLength))], samples }}));
    """
    result = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True, timeout=120)
    output = json.loads(result.stdout)
    assert output["sizes"] == [1280]  # 640 samples of 16-bit PCM: 40 ms frames
    samples = np.array(output["samples"], np.float64) / 32768
    assert abs(len(samples) - 32000) <= 640 + 64  # 2 s at 16 kHz, less the last partial frame
    spectrum = np.abs(np.fft.rfft(samples[1600:17600] * np.hanning(16000))) / (16000 / 4)  # 1 s window: 1 Hz bins
    assert spectrum[1000] == pytest.approx(0.4, rel=0.05)  # the tone's amplitude
    alias = abs(16000 - 11000)  # where 11 kHz would fold to
    assert spectrum[alias - 20 : alias + 20].max() < 0.004  # -40 dB
