"""OpenAI's REST transcriptions on the daemon's port: the request and response shapes without a
socket, then the real openai SDK (3.x) uploading shared clips to the daemon with tiny.en."""

from __future__ import annotations

import json

import httpx
import pytest

from benchmarks.daemon import Daemon
from benchmarks.wer import word_error_rate
from model.timing import Word
from model.transcribe import Segment, Transcript
from streamer.interfaces.multipart_form import Form, UploadedFile, parse_form
from streamer.interfaces.openai_rest import ApiError, parse_request, render, sse_done
from tests.conftest import INTERFACE_KEY, clip_by_id

openai = pytest.importorskip("openai", reason="the test extra's openai SDK is not installed")
from openai import OpenAI

CLIP = "ls_1272-128104-0000"


def _form(**fields: str) -> Form:
    form = Form(files={"file": UploadedFile("a.wav", "audio/wav", b"RIFF....")})
    for name, value in fields.items():
        form.fields.setdefault(name.replace("__", "[]"), []).append(value)
    return form


def test_request_fields_and_their_errors() -> None:
    options = parse_request(_form(language="en", temperature="0.4", response_format="verbose_json", timestamp_granularities__="word", chunking_strategy="auto"), task="transcribe")
    assert (options.language, options.temperatures[0], options.words, options.response_format) == ("en", 0.4, True, "verbose_json")
    assert options.temperatures == (0.4, 0.6, 0.8, 1.0)
    for bad in ({"response_format": "diarized_json"}, {"temperature": "hot"}, {"language": "klingon"}):
        with pytest.raises(ApiError) as refused:
            parse_request(_form(**bad), task="transcribe")
        assert refused.value.status == 400 and json.loads(refused.value.body())["error"]["type"] == "invalid_request_error"
    with pytest.raises(ApiError):
        parse_request(Form(), task="transcribe")


def test_multipart_body_is_parsed_by_python_multipart() -> None:
    request = httpx.Request("POST", "http://x/", data={"model": "whisper-1", "timestamp_granularities[]": ["word", "segment"]}, files={"file": ("a.wav", b"\x00\x01", "audio/wav")})
    form = parse_form(request.headers["Content-Type"], request.read())
    assert form.one("model") == "whisper-1" and form.many("timestamp_granularities") == ["word", "segment"]
    assert form.files["file"] == UploadedFile("a.wav", "audio/wav", b"\x00\x01")


def test_responses_in_each_format() -> None:
    words = (Word(" Hello", 0.0, 0.5, 0.9), Word(" world.", 0.5, 1.0, 0.9))
    segment = Segment(0, 0.0, 1.0, " Hello world.", (50364, 2425), -0.2, 1.1, 0.01, 0.0, words)
    transcript = Transcript("Hello world.", "en", (segment,))
    options = parse_request(_form(response_format="verbose_json", timestamp_granularities__="word"), task="transcribe")
    body = json.loads(render(options, transcript, 1.0).body)
    assert body["language"] == "english" and body["segments"][0]["text"] == " Hello world." and body["words"][1] == {"word": "world.", "start": 0.5, "end": 1.0}
    srt = render(parse_request(_form(response_format="srt"), task="transcribe"), transcript, 1.0).body.decode()
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\nHello world.\n\n"
    assert render(parse_request(_form(response_format="vtt"), task="transcribe"), transcript, 1.0).body.decode().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000")
    events = [e for e in sse_done(transcript, 1.0).decode().split("\n\n") if e]
    assert json.loads(events[0].removeprefix("data: "))["type"] == "transcript.text.done" and events[1] == "data: [DONE]"


# ---- the real SDK against the daemon ------------------------------------------------------------


def _client(daemon: Daemon, key: str = "any-key") -> OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{daemon.http_url}/v1", max_retries=0)


@pytest.mark.slow
def test_sdk_json_srt_verbose_and_stream(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    upload = ("a.wav", clip.path.read_bytes(), "audio/wav")
    audio = _client(daemon).audio.transcriptions
    plain = audio.create(model="whisper-1", file=upload)
    assert word_error_rate([clip.text], [plain.text]) < 0.1
    srt = audio.create(model="whisper-1", file=upload, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and "Quilter" in srt
    verbose = audio.create(model="whisper-1", file=upload, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert verbose.language == "english" and abs(verbose.duration - clip.duration_s) < 0.1
    assert verbose.segments and verbose.words and verbose.words[-1].end <= clip.duration_s + 0.5
    events = list(audio.create(model="whisper-1", file=upload, stream=True))
    done = [e for e in events if e.type == "transcript.text.done"]
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert len(done) == 1 and events[-1] is done[0] and done[0].text == plain.text == deltas.strip()


@pytest.mark.slow
def test_sdk_errors_in_openais_shape(keyed_daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    with pytest.raises(openai.AuthenticationError):
        _client(keyed_daemon, "wrong").audio.transcriptions.create(model="whisper-1", file=("a.wav", clip.path.read_bytes(), "audio/wav"))
    audio = _client(keyed_daemon, INTERFACE_KEY).audio.transcriptions
    with pytest.raises(openai.BadRequestError) as undecodable:
        audio.create(model="whisper-1", file=("a.wav", b"not audio at all" * 64, "audio/wav"))
    assert undecodable.value.body["code"] == "invalid_file"
    with pytest.raises(openai.APIStatusError) as too_big:  # the fixture's max_upload_bytes is 400000
        audio.create(model="whisper-1", file=("a.wav", bytes(500_000), "audio/wav"))
    assert too_big.value.status_code == 413
    with pytest.raises(openai.BadRequestError):  # tiny.en is English-only
        _client(keyed_daemon, INTERFACE_KEY).audio.translations.create(model="whisper-1", file=("a.wav", clip.path.read_bytes(), "audio/wav"))
    models = _client(keyed_daemon, INTERFACE_KEY).models.list()
    assert "tiny.en" in [m.id for m in models.data]


@pytest.mark.slow
def test_curl_style_upload_with_expect_100_continue(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    files = {"file": ("a.wav", clip.path.read_bytes(), "audio/wav")}
    response = httpx.post(f"{daemon.http_url}/v1/audio/transcriptions", files=files, data={"response_format": "text"},
                          headers={"Expect": "100-continue"}, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert word_error_rate([clip.text], [response.text]) < 0.1
