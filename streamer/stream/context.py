"""The stream buffer: the audio kept for the next decode, the committed words still in it (its
forced context), and where it is trimmed or cut in a pause; the prompt holds what was cut off."""

from __future__ import annotations

from dataclasses import replace

from model.constants import SAMPLE_RATE

from ..config import Config
from .buffer import AudioBuffer
from .commit import skip_committed
from .prompt import Prompt
from .tick import Word


class StreamBuffer:
    def __init__(self, config: Config, *, prompt: str = "") -> None:
        self._config = config
        self.audio = AudioBuffer()
        self.prompt = Prompt(config.stream.prompt_chars, prompt)
        self.committed: list[Word] = []  # committed words whose audio is still in the buffer
        self.unprompted = False  # this utterance is decoded without the prompt (`retry.missed_head`)

    def prompt_text(self) -> str:
        return "" if self.unprompted else self.prompt.text

    def context(self, *, tail_retried: bool) -> tuple[Word, ...]:
        """The committed words the next decode begins with, forced as known text. A decode done
        again, because one went wrong after its context, hears them afresh: forced, they led it to
        the same place ("…with ugly ones.", then nothing of the 7 s utterance after them)."""
        return () if tail_retried or self.unprompted else tuple(self.committed)

    def punctuate(self, after: float, marks: str) -> None:
        """The committed word that ended at `after` gets `marks` after it, the punctuation a decode
        wrote there (`streamer.stream.sentence`): in the context or, moved on, at the prompt's end."""
        for i, word in enumerate(self.committed):
            if word.end == after:
                self.committed[i] = replace(word, text=word.text + marks)
                return
        self.prompt.punctuate(marks)

    def trim_silence(self) -> None:
        """No speech pending: the buffer keeps the last `stream.overlap` s of committed words as the
        next utterance's context while the pause is short; else only a pre-roll for the next onset
        (silence is never decoded)."""
        if self.keep_context():
            return
        self.close_utterance()
        vad = self._config.vad
        keep = vad.preroll + vad.speech_start + 0.1
        self.audio.trim_to(self.audio.end - int(keep * SAMPLE_RATE))

    def keep_context(self) -> bool:
        """Between utterances: whether the buffer keeps the last `stream.overlap` s of committed
        words as the next utterance's context (while the pause after them is under
        `stream.context_pause`); the words before them become prompt. When it does not, the caller
        closes the utterance (`close_utterance`). Either way the next one has its prompt again."""
        self.unprompted = False
        stream = self._config.stream
        committed = self.committed
        if not committed or stream.overlap <= 0 or self.audio.end_time - committed[-1].end > stream.context_pause:
            return False
        self.trim_committed(everything=True, overlap=stream.overlap)
        return True

    def close_utterance(self) -> None:
        """The committed words of the buffer's utterance become prompt; the next one starts afresh."""
        self.prompt.extend(self.committed, utterance_ended=True)
        self.committed = []
        self.unprompted = False

    def cut_in_pause(self, speech_end: float, onset: float) -> float:
        """Closes the utterance and cuts the buffer in the pause between `speech_end` and the
        speech start after it, `onset` (no further back than a pre-roll before it), and not before
        the last committed word ends: its audio, heard again without it as context, would be
        committed twice (a late decode committed the next utterance's first word, "de", whose
        start the alignment put before the endpoint); returns the cut."""
        committed_end = self.committed[-1].end if self.committed else 0.0
        self.close_utterance()
        cut = max(onset - self._config.vad.preroll, (speech_end + onset) / 2, committed_end)
        self.audio.trim_to(int(cut * SAMPLE_RATE))
        return cut

    def trim_committed(self, *, everything: bool, overlap: float) -> None:
        """Cuts the buffer after committed words: at the end of the last committed Whisper segment,
        or at any word at a final commit or when the buffer grew past `stream.trim_after`.

        The last `overlap` s of committed words stay: a cut where the alignment
        placed a word boundary may clip the next word (heard as another word, or twice), and the
        audio and text before a word help the model hear it. The next decode begins with those
        words forced as its context (heard again, where a decode is done again: see `context`);
        `new_words` drops them from its hypothesis.
        """
        in_buffer = self.committed
        cut_after = self._cut_after(everything, overlap)
        if cut_after is None:
            return
        last = in_buffer[cut_after]
        nxt = in_buffer[cut_after + 1] if cut_after + 1 < len(in_buffer) else None
        # Between two words (their gap's middle) rather than on an edge the alignment may misplace.
        # Never past the next word's start, nor far past the word's own start: alignment
        # sometimes stretches a word's end over speech that follows.
        end = min(last.end, last.start + self._config.stream.max_word_seconds)
        cut = end if nxt is None else nxt.start if nxt.start <= end else (end + nxt.start) / 2
        self.audio.trim_to(round(cut * SAMPLE_RATE))
        self.prompt.extend(in_buffer[: cut_after + 1])
        self.committed = in_buffer[cut_after + 1 :]

    def _cut_after(self, everything: bool, overlap: float) -> int | None:
        """The committed word after which `trim_committed` cuts (None: no cut)."""
        in_buffer = self.committed
        # Cuts are allowed after word `i` only when the words after it span the overlap.
        kept = [in_buffer[-1].end - w.start for w in in_buffer[1:]] + [0.0]
        allowed = [i for i, seconds in enumerate(kept) if seconds >= overlap]
        if not allowed:
            return None
        if everything or self.audio.duration >= self._config.stream.trim_after:
            return allowed[-1]
        closing = [i for i in allowed if in_buffer[i].ends_segment]
        return closing[-1] if closing else None

    def new_words(self, words: list[Word]) -> list[Word]:
        """Drops the words of a hypothesis that re-hear committed audio still in the buffer:
        matched on text (`skip_committed`); by time only when the text does not match."""
        committed = self.committed
        skip = skip_committed(committed, words)
        if skip is not None:
            return words[skip:]
        # Misheard beyond matching: keep the words centred after the last committed one ends.
        last = committed[-1].end
        return [w for w in words if (w.start + w.end) / 2 > last]
