"""Wyoming (Home Assistant's speech protocol) onto a protocol v1 stream, without I/O.

One connection is one utterance, as Home Assistant uses it: `transcribe` (language), then
`audio-start`/`-chunk`/`-stop`. `WyomingSession.receive` turns each event into what the adapter
must do (open the stream, feed PCM, stop it) and events to send; `translate` turns the stream's
stable segments into `transcript-chunk`s (after one `transcript-start`), and its `End` into the
final `transcript` then `transcript-stop`. `describe` is answered with `info` at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from wyoming.asr import (
    Transcribe,
    Transcript,
    TranscriptChunk,
    TranscriptStart,
    TranscriptStop,
)
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info

from wire import End, ServerMessage, Stable, Start

from .deepgram import whisper_language

ATTRIBUTION = Attribution(name="OpenAI Whisper, served by whisper-streamer", url="https://github.com/openai/whisper")
ENGLISH = ["en"]


def info(model_name: str, languages: list[str]) -> Info:
    model = AsrModel(name=model_name, attribution=ATTRIBUTION, installed=True, description=f"Whisper {model_name}", version=None, languages=languages)
    program = AsrProgram(
        name="whisper-streamer", attribution=ATTRIBUTION, installed=True, description="Streaming Whisper transcription", version="1",
        models=[model], supports_transcript_streaming=True,
        requires_external_vad=True,  # one utterance per connection: Home Assistant's VAD ends it
    )
    return Info(asr=[program])


@dataclass(frozen=True)
class OpenStream:
    start: Start


@dataclass(frozen=True)
class FeedAudio:
    pcm: bytes


@dataclass(frozen=True)
class StopStream:
    pass


Action = OpenStream | FeedAudio | StopStream


@dataclass
class WyomingSession:
    model_name: str
    languages: list[str] = field(default_factory=lambda: list(ENGLISH))
    language: str | None = None  # from `transcribe`; None: the model's default (detected)
    started: bool = False  # audio-start seen
    stopped: bool = False
    texts: list[str] = field(default_factory=list)
    _announced: bool = False  # transcript-start sent

    def receive(self, event: Event) -> tuple[list[Action], list[Event]]:
        if Describe.is_type(event.type):
            return [], [info(self.model_name, self.languages).event()]
        if Transcribe.is_type(event.type):
            transcribe = Transcribe.from_event(event)
            self.language = whisper_language(transcribe.language) if transcribe.language else None
            return [], []
        if AudioStart.is_type(event.type):
            return self._audio_start(AudioStart.from_event(event))
        if AudioChunk.is_type(event.type):
            if not self.started or self.stopped:
                return [], [Error("audio-chunk outside audio-start … audio-stop", "out-of-order").event()]
            return [FeedAudio(AudioChunk.from_event(event).audio)], []
        if AudioStop.is_type(event.type):
            if not self.started:
                return [], [*self._announce(), Transcript(text="").event(), TranscriptStop().event()]  # no audio: empty text
            self.stopped = True
            return [StopStream()], []
        return [], []  # unknown events are ignored, as the protocol asks

    def _audio_start(self, start: AudioStart) -> tuple[list[Action], list[Event]]:
        if self.started:
            return [], [Error("a second audio-start on one connection", "out-of-order").event()]
        if start.width != 2:
            return [], [Error(f"audio must be 16-bit (width 2), got width {start.width}", "unsupported-audio").event()]
        self.started = True
        return [OpenStream(Start(sample_rate=start.rate, channels=start.channels, language=self.language or "auto"))], []

    def _announce(self) -> list[Event]:
        if self._announced:
            return []
        self._announced = True
        return [TranscriptStart(language=self.language).event()]

    def translate(self, messages: Sequence[ServerMessage]) -> tuple[list[Event], bool]:
        """Events for the stream's messages, and whether the connection is done."""
        out: list[Event] = []
        for message in messages:
            if isinstance(message, Stable) and message.text.strip():
                out.extend(self._announce())
                text = message.text if self.texts else message.text.lstrip()
                self.texts.append(text)
                out.append(TranscriptChunk(text=text).event())
            elif isinstance(message, End):
                out.extend(self._announce())
                out.append(Transcript(text="".join(self.texts).strip(), language=self.language).event())
                out.append(TranscriptStop().event())
                return out, True
        return out, False
