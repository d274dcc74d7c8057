"""What one answered request cost, as a typed record handed to whoever keeps the ledger (a callback).

The serving code of closed models (:mod:`modelcluster.gateway.providers.serving`) reports one
:class:`UsageRecord` per request, also when a stream broke off half-way (``complete`` false, the counts what had
arrived). Register a sink with :meth:`UsageReporter.add` (``gateway.providers.usage.add(sink)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class UsageRecord:
    tenant: str
    #: ``openai``, ``anthropic``, ``google``, ``cohere`` or ``mistral``.
    provider: str
    #: The model id as the caller named it (``anthropic/claude-3-haiku-20240307``).
    model: str
    #: ``native``, ``openai.chat`` or ``openai.responses``.
    route: str
    prompt_tokens: int
    completion_tokens: int
    #: The status the caller was answered (or, for a stream that failed after its 200, the error's).
    status: int
    stream: bool
    #: False when the answer failed or broke off; the counts are then what the provider had reported.
    complete: bool

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


UsageSink = Callable[[UsageRecord], None]

#: The request's own sink (the usage ledger's draft of that request), set by the route before a closed model runs.
REQUEST_USAGE_SINK: web.RequestKey[UsageSink] = web.RequestKey("usage_sink")


@dataclass
class UsageReporter:
    """The sinks that hear of every :class:`UsageRecord`; none by default."""

    sinks: list[UsageSink] = field(default_factory=list)

    def add(self, sink: UsageSink) -> None:
        self.sinks.append(sink)

    def report(self, record: UsageRecord) -> None:
        for sink in self.sinks:
            sink(record)
