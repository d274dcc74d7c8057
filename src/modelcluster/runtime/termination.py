"""The cause of a fatal error, left where Kubernetes reads a container's termination message."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

#: Kubernetes keeps at most 4096 bytes of a termination message.
MAX_MESSAGE_BYTES = 4096


def termination_message(cause: str) -> str:
    """``cause`` cut to what Kubernetes keeps (whole characters, the start: it names the error)."""
    encoded = cause.strip().encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return cause.strip()
    return encoded[: MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "..."


def write_termination_message(path: Path, cause: str) -> bool:
    """Write ``cause`` to ``path`` when that file exists (the kubelet creates it); whether it was written."""
    if not path.is_file():
        return False
    try:
        path.write_text(termination_message(cause), encoding="utf-8")
    except OSError as error:
        logger.warning("cannot write the termination message to %s: %s", path, error)
        return False
    return True
