"""The commit policy a stream uses, chosen by name (`stream.commit_policy`, or `start`'s), and
which of a decode's new words it is asked about."""

from __future__ import annotations

from ..config import COMMIT_POLICIES, StreamConfig
from .commit import AlignAtt, CommitPolicy, LocalAgreement
from .tick import Word


def make_policy(name: str, stream: StreamConfig) -> CommitPolicy:
    """The policy called `name` (one of `COMMIT_POLICIES`); ValueError for any other."""
    if name == "local-agreement":
        return LocalAgreement(stream.local_agreement_n, stream.agreement_margin, stream.agreement_gap)
    if name == "alignatt":
        return AlignAtt(stream.alignatt_margin)
    raise ValueError(f"unknown commit policy {name!r} (known: {', '.join(COMMIT_POLICIES)})")


def commit_count(policy: CommitPolicy, words: list[Word], *, final: bool, until: float | None, truncated: bool, window_end: float) -> int:
    """How many leading `words` of a decode up to `window_end` to commit. `final` commits every
    word, or with `until` every word that starts before that time; else the policy decides."""
    if final:
        limit = len(words) if until is None else next((i for i, w in enumerate(words) if w.start >= until), len(words))
        if truncated:
            limit = min(limit, max(0, len(words) - 1))  # the window's last word may be cut by its edge
        count = policy.decide(words[:limit], final=True)
        policy.decide(words[limit:], final=False)  # what follows starts a new agreement
        return count
    return policy.decide(words, final=False, window_end=window_end)
