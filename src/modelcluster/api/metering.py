"""What the runtime and the gateway tell each other and the caller about the price of an answer.

The runtime reports the time its pod spent on a request: the :data:`INFERENCE_SECONDS_HEADER` of a whole answer,
or the :data:`INFERENCE_SECONDS_FIELD` of the last SSE event of a stream (beside its ``usage``). The gateway
answers every inference request with the meter, its price, the inference time and the cost
(``cost = meter price x inference time``, seconds and US dollars), in :data:`METER_HEADERS`; a streamed OpenAI
answer also carries them in its usage chunk, under :data:`USAGE_FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds the runtime's pod spent on the request (from its arrival to the answer), on ``/run`` answers.
INFERENCE_SECONDS_HEADER = "X-Inference-Seconds"
#: The same for a stream: a key of the event that carries the token usage, right before ``[DONE]``.
INFERENCE_SECONDS_FIELD = "inference_seconds"

#: The gateway's answer headers.
METER_HEADER = "X-Inference-Meter"
METER_PRICE_HEADER = "X-Inference-Meter-Price"
INFERENCE_TIME_HEADER = "X-Inference-Time"
INFERENCE_COST_HEADER = "X-Inference-Cost"
METER_HEADERS = (METER_HEADER, METER_PRICE_HEADER, INFERENCE_TIME_HEADER, INFERENCE_COST_HEADER)

#: The keys of the same figures in the ``usage`` object of a streamed OpenAI answer's last chunk.
USAGE_FIELDS = ("meter", "meter_price", "inference_time", "inference_cost")


def format_figure(value: float) -> str:
    """A price, a time or a cost as sent: the shortest text that reads back as the same float."""
    return repr(float(value))


@dataclass(frozen=True)
class MeterReading:
    """The four figures of one answer: the meter, its price ($/s), the inference time (s) and the cost ($)."""

    meter: str
    meter_price: float
    inference_seconds: float
    cost: float

    def headers(self) -> dict[str, str]:
        return {
            METER_HEADER: self.meter,
            METER_PRICE_HEADER: format_figure(self.meter_price),
            INFERENCE_TIME_HEADER: format_figure(self.inference_seconds),
            INFERENCE_COST_HEADER: format_figure(self.cost),
        }

    def usage_fields(self) -> dict[str, str | float]:
        meter, price, time, cost = USAGE_FIELDS
        return {meter: self.meter, price: self.meter_price, time: self.inference_seconds, cost: self.cost}


def parse_seconds(value: object) -> float | None:
    """A non-negative, finite number of seconds as a peer sent it (a number or its text); ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds
