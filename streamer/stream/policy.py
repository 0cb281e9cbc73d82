"""The commit policy a stream uses, chosen by name (`stream.commit_policy`, or `start`'s), and
which of a decode's new words it is asked about."""

from __future__ import annotations

from ..commit import CommitPolicy, LocalAgreement
from ..config import COMMIT_POLICIES, StreamConfig
from ..tick import Word


def make_policy(name: str, stream: StreamConfig) -> CommitPolicy:
    """The policy called `name` (one of `COMMIT_POLICIES`); ValueError for any other."""
    if name == "local-agreement":
        return LocalAgreement(stream.local_agreement_n)
    raise ValueError(f"unknown commit policy {name!r} (known: {', '.join(COMMIT_POLICIES)})")


def commit_count(policy: CommitPolicy, words: list[Word], *, final: bool, until: float | None, truncated: bool, window_end: float, margin: float) -> int:
    """How many leading `words` to commit. `final` commits every word, or with `until` every
    word that starts before that time; else the policy decides on the words `margin` s or more
    before the window's end."""
    if final:
        limit = len(words) if until is None else next((i for i, w in enumerate(words) if w.start >= until), len(words))
        if truncated:
            limit = min(limit, max(0, len(words) - 1))  # the window's last word may be cut by its edge
        count = policy.decide(words[:limit], final=True)
        policy.decide(words[limit:], final=False)  # what follows starts a new agreement
        return count
    # A word near the window's edge may be cut off, or misheard for want of what follows, the
    # same way twice: it waits until the audio after it is heard.
    whole = next((i for i, w in enumerate(words) if w.end >= window_end - margin), len(words))
    return policy.decide(words[:whole], final=False)
