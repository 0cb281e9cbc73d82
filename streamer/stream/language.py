"""The stream's language: fixed by `start` (or an English-only model), or decided by the
language decider (`streamer.stream.language_decider`), and what its decisions mean for a decode.

In `auto`, stable text waits (is held) until the decider knows the stream's language, and each
later utterance's until its own language-ID is in; a decode tells the decider what it heard,
and words to commit that were decoded in another language are decoded again in the stream's.
`streamer.stream.results` acts on these answers (holds, switches).
"""

from __future__ import annotations

from model.tokenizer import normalize_language
from wire import CloseCode, LanguageDetected, ProtocolError, ServerMessage, Start

from ..config import Config
from .language_decider import LanguageDecider, LanguageDecision
from .tick import Hypothesis, TickRequest, Word


class StreamLanguage:
    def __init__(self, start: Start, config: Config, model_name: str, multilingual: bool) -> None:
        language = start.language.lower()
        if not multilingual and language not in ("auto", "en"):
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model_name} is English-only; language {start.language!r} is not available")
        if not multilingual and start.task == "translate":
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model_name} is English-only and cannot translate")
        fixed = None if language == "auto" and multilingual else ("en" if language == "auto" else language)
        self.decider = LanguageDecider(config.language, _candidates(start, config, model_name, multilingual), fixed=fixed)
        self.fixed = self.decider.fixed
        # The language stable text is in: the decider's once a decode has told the stream about it.
        self.language: str | None = self.decider.language

    def opening(self) -> list[ServerMessage]:
        """Sent with `ready`: a language fixed from the start."""
        return [LanguageDetected(self.language, 1.0)] if self.fixed and self.language is not None else []

    def continue_with(self, language: str | None, now: float) -> None:
        """A stream continued from another replica goes on in the language it had there."""
        if language is not None and self.language is None:
            self.decider.resume(language, now)
            self.language = self.decider.language

    @property
    def holding(self) -> bool:
        return self.decider.holding

    def holds(self, *, final: bool, earlier: bool) -> bool:
        """Whether a commit waits for the language: all do while it holds, but for a final decode's
        of an utterance that ended before the latest one began (`earlier`) once the stream's
        language is decided: those words commit now, so the latest one's check does not wait for
        them, nor they for it; unless that utterance waits for the next one's evidence
        (`LanguageDecider.waiting`). Before the decision nothing commits: no `stable` precedes the
        first `language`."""
        decider = self.decider
        early_final = final and earlier and decider.decision is not None and not decider.waiting
        return decider.holding and not early_final

    def request_language(self, window_start: float) -> str | None:
        """The language a decode is in: the stream's; None (detected) while it is not decided, or
        while the window holds just an utterance whose own language is not known yet."""
        decider = self.decider
        if not decider.holding or decider.language is None:
            return decider.language
        onset = decider.detect_from
        alone = onset is not None and window_start >= onset - 0.05
        return None if alone else self.language

    def observe(self, request: TickRequest, hypothesis: Hypothesis, words: list[Word], *, earlier: bool, stopping: bool) -> LanguageDecision | None:
        """Gives the decider a decode's language-ID (`earlier`: the decode commits an earlier
        utterance, see `holds`); a final decode that must commit (stop, flush, `language.max_hold`)
        decides on what there is. Returns the decision when it is new, or a switch."""
        decider, now = self.decider, request.window_end
        # Before the decision, a decode with no words (noise) gives no evidence; after it, a decode in
        # the stream's language may hear nothing of an utterance in another, whose ID still counts.
        if request.detect_language and hypothesis.language_probs is not None and (words or self.language is not None):
            onset = request.detect_from if request.detect_from is not None else request.window_start
            # A final decode ends the utterances it commits, not one begun since (a late worker's).
            final = request.final and (request.commit_until is None or onset < request.commit_until)
            decider.observe(onset, hypothesis.language_probs, request.voiced_total, now, final=final)
        elif request.detect_language and words and request.language is None:
            decider.report(hypothesis.language, hypothesis.language_probability, now)
        # Only a final decode of the held speech itself decides on what there is.
        heard = request.detect_from is None or abs(request.detect_from - (decider.detect_from or 0.0)) < 1e-6
        if decider.holding and request.final and not earlier and heard and (stopping or self.hold_expired(now)):
            decider.force(now)
        decision = decider.decision
        return decision if decision is not None and decision.language != self.language else None

    def adopt(self, decision: LanguageDecision) -> LanguageDetected:
        """The stream is in `decision`'s language from now on (after a switch's commits in the old one)."""
        self.language = decision.language
        return LanguageDetected(decision.language, decision.probability)

    def in_other_language(self, hypothesis: Hypothesis, words: list[Word], *, final: bool, earlier: bool) -> bool:
        """Whether words to commit were decoded in another language than the stream's: they are
        decoded again in it."""
        commits = not self.holds(final=final, earlier=earlier)
        return bool(words) and commits and self.is_other(hypothesis.language)

    def is_other(self, language: str) -> bool:
        """Whether text decoded in `language` is not in the stream's (once it has one)."""
        return self.language is not None and language != self.language

    def hold_expired(self, now: float) -> bool:
        """Text held past `language.max_hold`: it gets the final decode that decides."""
        return self.decider.holding and self.decider.hold_expired(now)


def _candidates(start: Start, config: Config, model_name: str, multilingual: bool) -> tuple[str, ...]:
    """The languages detection chooses among: the client's, else the config's (empty: any)."""
    try:
        codes = tuple(normalize_language(code) or "" for code in start.languages)
    except ValueError as exc:
        raise ProtocolError(CloseCode.UNSUPPORTED, f"languages: {exc}") from exc
    if not multilingual:
        if any(code != "en" for code in codes):
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model_name} is English-only; languages {list(codes)} are not available")
        return ()
    return codes or config.language.language_list
