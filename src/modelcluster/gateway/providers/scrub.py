"""Keeping the caller's provider key out of everything the gateway says: answers, errors and logs.

Providers echo keys back: OpenAI's 401 names a masked fragment (``sk-proj-****...MxYA``), and an exception
string may carry a URL or a header. :func:`scrub` removes the key and anything that looks like a fragment of it.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
#: The shortest fragment of a key (its head or tail) that is taken for the key.
FRAGMENT = 4
_TOKEN = re.compile(r"\S+")


def scrub(text: str, key: str) -> str:
    """``text`` without ``key``, its first or last characters in a masked token, or any token holding them."""
    if not key:
        return text
    text = text.replace(key, REDACTED)
    if len(key) < 2 * FRAGMENT:
        return text
    head, tail = key[: 2 * FRAGMENT], key[-FRAGMENT:]

    def redact(match: re.Match[str]) -> str:
        token = match.group(0)
        masked = "*" in token or "…" in token or "..." in token
        if head in token or (masked and tail in token) or (len(token) >= 2 * FRAGMENT and key.startswith(token)):
            return REDACTED
        return token

    return _TOKEN.sub(redact, text)
