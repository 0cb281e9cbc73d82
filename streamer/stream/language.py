"""The stream's language: fixed by `start` (or an English-only model), or detected from decodes."""

from __future__ import annotations

from ..protocol import CloseCode, LanguageDetected, ProtocolError, ServerMessage, Start
from ..tick import Hypothesis, Word


class StreamLanguage:
    def __init__(self, start: Start, model_name: str, multilingual: bool, confidence: float) -> None:
        language = start.language.lower()
        if not multilingual and language not in ("auto", "en"):
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model_name} is English-only; language {start.language!r} is not available")
        if not multilingual and start.task == "translate":
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model_name} is English-only and cannot translate")
        self.fixed = language != "auto" or not multilingual
        self.language: str | None = None if language == "auto" and multilingual else ("en" if language == "auto" else language)
        self._confidence = confidence  # detection probability at which the language is fixed

    def opening(self) -> list[ServerMessage]:
        """Sent with `ready`: a language fixed from the start."""
        return [LanguageDetected(self.language, 1.0)] if self.fixed and self.language is not None else []

    def detect(self, hypothesis: Hypothesis, words: list[Word]) -> list[ServerMessage]:
        """Fixes the language from a decode that heard words, when it is sure enough."""
        if self.language is None and words and hypothesis.language_probability >= self._confidence:
            self.language = hypothesis.language
            return [LanguageDetected(hypothesis.language, hypothesis.language_probability)]
        return []
