"""A stream's language: decided on enough voiced speech, re-checked per utterance, with hysteresis.

Plain code, no I/O, no model: the session feeds it the language-ID distribution (probabilities)
of decodes and tells it where utterances begin; it answers which language the stream is in,
and whether commits must wait for it.

- Before the first decision nothing is committed, so the session's buffer keeps all the speech
  since the first onset: each decode's language-ID hears the first utterances together (as
  offline transcription's first window does) and replaces the one before, with the voiced
  seconds since the first onset as its weight. It decides once `min_speech` voiced seconds are
  in and the top language holds `confidence`, or after `max_hold` seconds since the first
  speech on whatever it has (`force` does so on demand: flush, stop).
- After it, each utterance gets its own language-ID (one observation once it has
  `switch_speech` voiced seconds, or at its end). The stream switches when the utterances
  since the last one won by the current language (at most `recheck_utterances` of them) hold
  `switch_speech` voiced seconds and another language has `switch_confidence` of them; the
  switch holds from the first of those utterances won by it (`LanguageDecision.since`). An
  utterance of which a decode heard enough but not clearly waits (its text is held) until its end.
  A short one (under `switch_speech`) that ends won by another language waits for the next
  one's evidence: the first words of a new speaker, too short to switch on, are not committed
  in the old language only to be heard again in the new one.
- Detection chooses only among `languages` when given; a single one is decided from the start.

Whisper's language ID on the first second is unreliable: the shared Spanish clip reads as
Arabic (0.93) at 1.5 s and as Spanish (0.99) on the whole clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..config import LanguageConfig


@dataclass(frozen=True)
class LanguageDecision:
    """The stream's language from a given moment on."""

    language: str
    probability: float  # the language's share of the evidence it was decided on
    voiced_seconds: float  # voiced speech that evidence covers
    time: float  # stream seconds when decided
    reason: str  # given | confident | max_hold | forced | switch | reported | resumed
    since: float = 0.0  # stream seconds from which speech is in it (a switch: where its run of utterances began)


@dataclass(frozen=True)
class UtteranceLanguage:
    """One utterance's own language-ID."""

    onset: float  # stream seconds where the utterance began
    language: str
    probability: float
    voiced_seconds: float


@dataclass(eq=False)  # one utterance is itself, not its fields
class _Utterance:
    onset: float
    voiced_at_onset: float  # the VAD's voiced total when it began
    voiced: float = 0.0  # voiced seconds, frozen once the next utterance begins
    probs: dict[str, float] = field(default_factory=dict)  # empty: not observed yet
    closed: bool = False
    checked: bool = False  # its own language-ID is in (after the first decision)


class LanguageDecider:
    """The language state of one stream (owned by its session)."""

    def __init__(self, config: LanguageConfig, languages: Sequence[str] = (), *, fixed: str | None = None) -> None:
        self._config = config
        self.candidates: tuple[str, ...] = tuple(dict.fromkeys(languages))
        self._utterances: list[_Utterance] = []
        self._first_onset: float | None = None
        self._first_voiced = 0.0  # the VAD's voiced total at the first onset
        self._held = _Utterance(0.0, 0.0)  # before the decision: the latest ID of all the held speech
        self._expired = False
        self._released = False  # forced with no evidence at all: commits go on undecided
        self._waiting: list[_Utterance] = []  # short, ended, won by another language: held for the next one
        self.decision: LanguageDecision | None = None
        self.history: list[UtteranceLanguage] = []  # finished utterances' own language-IDs
        if fixed is None and len(self.candidates) == 1:
            fixed = self.candidates[0]
        self.fixed = fixed is not None
        if fixed is not None:
            self.decision = LanguageDecision(fixed, 1.0, 0.0, 0.0, "given")

    @property
    def language(self) -> str | None:
        return None if self.decision is None else self.decision.language

    @property
    def holding(self) -> bool:
        """Whether commits wait: the stream's language, or the current utterance's, is not known."""
        if self.fixed or self._released:
            return False
        if self.decision is None:
            return True
        if self.decision.reason == "reported":
            return False  # a decoder that reports no distribution gives nothing to re-check with
        current = self._current
        return bool(self._waiting) or (current is not None and not current.checked)

    @property
    def waiting(self) -> bool:
        """Whether an utterance that ended waits for the next one's evidence (see the module)."""
        return bool(self._waiting)

    @property
    def detect_from(self) -> float | None:
        """Where the audio a language-ID should hear begins (stream seconds; None before any
        speech): the first speech before the decision (all of it is held), else the start of the
        utterance to be checked next (`_to_check`)."""
        target = self._to_check
        if self.decision is None or target is None:
            return self._first_onset
        return target.onset

    @property
    def detect_until(self) -> float | None:
        """Where that audio ends: where the utterance after the one to be checked began (None:
        it is the latest). A worker late by seconds answers with the next utterance begun, even
        the one after it: the ID of the one its decode commits must not hear them."""
        target = self._to_check
        if self.decision is None or target is None or target is self._current:
            return None
        return self._utterances[self._utterances.index(target) + 1].onset

    @property
    def _to_check(self) -> _Utterance | None:
        """The earliest utterance since the last checked one that is not a short one that ended
        (it waits for the next one's evidence, `_switch_since`); else the latest. Not always the
        latest: when a late worker's final decode commits an utterance, the next one has begun,
        and an ID of that one (0.2 s of French) left the German before it unheard, and the switch
        to French took it."""
        unchecked: list[_Utterance] = []
        for utterance in reversed(self._utterances):
            if utterance.checked:
                break
            unchecked.insert(0, utterance)
        short = self._config.switch_speech
        return next((u for u in unchecked if u not in self._waiting and not (u.closed and u.voiced < short)), self._current)

    @property
    def _current(self) -> _Utterance | None:
        return self._utterances[-1] if self._utterances else None

    def begin_utterance(self, onset: float, voiced_total: float) -> None:
        """The VAD heard speech start at `onset`; `voiced_total` is its voiced seconds so far."""
        if self._first_onset is None:
            self._first_onset, self._first_voiced = onset, voiced_total
        current = self._current
        if current is not None and not current.closed:
            current.voiced = voiced_total - current.voiced_at_onset
            current.closed = True
            if current.probs:
                top, p = _top(current.probs)
                self.history.append(UtteranceLanguage(current.onset, top, p, current.voiced))
        self._utterances.append(_Utterance(onset, voiced_total))
        del self._utterances[: -max(self._config.recheck_utterances, 1) - 8]  # bounded memory

    def observe(self, onset: float, probs: Mapping[str, float], voiced_total: float, now: float, *, final: bool = False) -> LanguageDecision | None:
        """The language-ID of a decode of the utterance that began at `onset`. Returns the new
        decision when the stream's language is decided or switches now, else None."""
        if self.fixed:
            return None
        if self.decision is None:
            self._held.probs = self._restricted(probs)
            self._held.voiced = max(voiced_total - self._first_voiced, 0.0)
            return self._maybe_decide(now) if self._held.probs else None
        utterance = next((u for u in reversed(self._utterances) if abs(u.onset - onset) < 1e-6), self._current)
        if utterance is None:
            self.begin_utterance(onset, 0.0)
            utterance = self._utterances[-1]
        if not utterance.closed:
            utterance.voiced = max(voiced_total - utterance.voiced_at_onset, 0.0)
        utterance.probs = self._restricted(probs)
        if not utterance.probs or utterance.checked:
            return None
        # Enough of it, in the stream's language, confirms it; in another, unclear, it waits for more.
        short = utterance.voiced < self._config.switch_speech
        enough = final or not short
        switch = self._maybe_switch(utterance, now) if enough else None
        if switch is not None or (enough and _top(utterance.probs)[0] == self.decision.language):
            utterance.checked = True
            self._release_waiting()  # in the current language like it, or taken by the switch
        elif final and short:
            if utterance not in self._waiting:
                self._waiting.append(utterance)
        elif final:
            utterance.checked = True  # unclear to its end: in the current language, and so are those waiting
            self._release_waiting()
        return switch

    def report(self, language: str, probability: float, now: float) -> LanguageDecision | None:
        """A decode that reports only its top language, no distribution: taken at its word once
        `probability` reaches 0.5 (how streams decided before distributions were kept)."""
        if self.decision is not None or probability < 0.5 or (self.candidates and language not in self.candidates):
            return None
        self.decision = LanguageDecision(language, probability, 0.0, now, "reported")
        for utterance in self._utterances:
            utterance.checked = True
        return self.decision

    def resume(self, language: str, now: float) -> None:
        """Goes on with the language a stream had on another replica: decided, so nothing is held
        for it; later utterances are re-checked (and may switch) as they would have been there."""
        if self.decision is None and not self.fixed:
            self.decision = LanguageDecision(language, 1.0, 0.0, now, "resumed", since=now)

    def expire(self) -> None:
        """Decide at the next observation or `force` (a flush: the client wants its text now)."""
        self._expired = True

    def hold_expired(self, now: float) -> bool:
        """Whether commits have waited `max_hold` since the first speech (after the decision: since
        the current utterance began), or `expire` was called."""
        if self._expired:
            return True
        current = self._current
        if self.decision is None or current is None:
            since = self._first_onset
        else:
            since = self._waiting[0].onset if self._waiting else current.onset
        return since is not None and now - since >= self._config.max_hold

    def force(self, now: float) -> LanguageDecision | None:
        """Decides on whatever evidence there is; marks the current utterance checked, so its
        text is committed. With no evidence at all, none is decided (None) and commits go on in
        the decoder's own language."""
        current = self._current
        if current is not None:
            current.checked = True
        self._release_waiting()
        if self.decision is not None or self.fixed:
            return None
        language, probability, voiced = self._evidence([self._held])
        if language is None:
            self._released = True
            return None
        reason = "max_hold" if not self._expired and self.hold_expired(now) else "forced"
        self.decision = LanguageDecision(language, probability, voiced, now, reason)
        self._check_all(now)
        return self.decision

    def _maybe_decide(self, now: float) -> LanguageDecision | None:
        language, probability, voiced = self._evidence([self._held])
        if language is None:
            return None
        config = self._config
        if voiced >= config.min_speech and probability >= config.confidence:
            reason = "confident"
        elif self.hold_expired(now):
            reason = "forced" if self._expired else "max_hold"
        else:
            return None
        self.decision = LanguageDecision(language, probability, voiced, now, reason)
        self._check_all(now)
        return self.decision

    def _maybe_switch(self, latest: _Utterance, now: float) -> LanguageDecision | None:
        """Switches when the latest utterances since the last one won by the current language, at
        most `recheck_utterances` with `latest`, clearly hold another: the latest alone, or with
        the ones before it (an unclear one before them, Spanish heard as Portuguese, must not
        outvote a clear new language)."""
        assert self.decision is not None
        current, config = self.decision.language, self._config
        run: list[_Utterance] = []
        for utterance in reversed([u for u in self._utterances if u.probs and (u.checked or u is latest or u in self._waiting)]):
            if _top(utterance.probs)[0] == current or len(run) == config.recheck_utterances:
                break
            run.append(utterance)
            language, probability, voiced = self._evidence(run)
            if language is not None and language != current and voiced >= config.switch_speech and probability >= config.switch_confidence:
                self.decision = LanguageDecision(language, probability, voiced, now, "switch", self._switch_since(run, language))
                return self.decision
        return None

    def _switch_since(self, run: Sequence[_Utterance], language: str) -> float:
        """Where a switch to `language` begins: the earliest utterance of `run` won by it, and
        the short ones just before it won by it too, or not heard (the new speaker's first
        words). A short one won by a third language stays in the old one: base reads a short
        Spanish sentence as Portuguese, and the German after it must not take it."""
        assert self.decision is not None
        first = min((u for u in run if _top(u.probs)[0] == language), key=lambda u: u.onset)
        since = first.onset
        for utterance in reversed([u for u in self._utterances if u.onset < first.onset]):
            short = utterance.voiced < self._config.switch_speech
            if utterance.probs and (not short or _top(utterance.probs)[0] != language):
                break
            since = utterance.onset
        return since

    def _release_waiting(self) -> None:
        for utterance in self._waiting:
            utterance.checked = True
        self._waiting.clear()

    def _check_all(self, now: float) -> None:
        """At the decision: the held utterances the deciding decode heard (begun before `now`)
        take the held speech's language-ID as their own; a later one gets its own check."""
        self._released = False
        for utterance in self._utterances:
            if utterance.onset < now:
                utterance.checked = True
                utterance.probs = utterance.probs or dict(self._held.probs)

    def _evidence(self, utterances: Sequence[_Utterance]) -> tuple[str | None, float, float]:
        """The top language of the voiced-weighted mean distribution, its share, and the voiced seconds."""
        observed = [u for u in utterances if u.probs]
        voiced = sum(u.voiced for u in observed)
        if not observed:
            return None, 0.0, 0.0
        weights = [u.voiced for u in observed] if voiced > 0 else [1.0] * len(observed)
        mean: dict[str, float] = {}
        for weight, utterance in zip(weights, observed, strict=True):
            for language, p in utterance.probs.items():
                mean[language] = mean.get(language, 0.0) + weight * p / sum(weights)
        language, probability = _top(mean)
        return language, probability, voiced

    def _restricted(self, probs: Mapping[str, float]) -> dict[str, float]:
        """`probs` over the candidate languages (renormalised), or all of them when none are given."""
        kept = {k: float(v) for k, v in probs.items() if not self.candidates or k in self.candidates}
        total = sum(kept.values())
        return {k: v / total for k, v in kept.items()} if total > 0 else {}


def _top(probs: Mapping[str, float]) -> tuple[str, float]:
    language = max(probs, key=lambda k: probs[k])
    return language, probs[language]
