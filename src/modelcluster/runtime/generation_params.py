"""The generation parameters a request may set, with their bounds: one allowlist for ``generate()`` and vLLM.

Anything else (``streamer``, ``num_return_sequences``, ``max_length``, ``use_cache``...) answers 422, so a request
cannot change what the server returns or multiply its cost beyond the bounds below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.runtime.limits import SETTING_NAMES, Limits, check_integer, check_number

TRANSFORMERS = "transformers"
VLLM = "vllm"
BOTH = frozenset({TRANSFORMERS, VLLM})

#: OpenAI-style names accepted as aliases of generate() arguments.
PARAM_ALIASES = {"max_tokens": "max_new_tokens", "min_tokens": "min_new_tokens"}

#: Below this a temperature is greedy decoding (as vLLM takes it): dividing logits by it would overflow them.
MIN_SAMPLING_TEMPERATURE = 1e-5

MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256

Check = Callable[[str, Any, Limits], object]


def _boolean(name: str, value: Any, limits: Limits) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false")
    return value


def _tokens(low: int) -> Check:
    def check(name: str, value: Any, limits: Limits) -> int:
        return check_integer(name, value, low, limits.max_new_tokens, SETTING_NAMES["max_new_tokens"])

    return check


def _beams(name: str, value: Any, limits: Limits) -> int:
    return check_integer(name, value, 1, limits.max_num_beams, SETTING_NAMES["max_num_beams"])


def _integer(low: int, high: int | None = None) -> Check:
    return lambda name, value, limits: check_integer(name, value, low, high)


def _number(low: float, high: float, *, low_open: bool = False) -> Check:
    return lambda name, value, limits: check_number(name, value, low, high, low_open=low_open)


def _stop(name: str, value: Any, limits: Limits) -> list[str]:
    strings = [value] if isinstance(value, str) else value
    if (
        not isinstance(strings, list)
        or not 1 <= len(strings) <= MAX_STOP_STRINGS
        or not all(isinstance(item, str) and 0 < len(item) <= MAX_STOP_LENGTH for item in strings)
    ):
        raise InputError(
            f"{name} must be a string or a list of 1 to {MAX_STOP_STRINGS} non-empty strings "
            f"of at most {MAX_STOP_LENGTH} characters"
        )
    return strings


@dataclass(frozen=True)
class GenerationParam:
    check: Check
    engines: frozenset[str] = BOTH


PARAMS: dict[str, GenerationParam] = {
    "max_new_tokens": GenerationParam(_tokens(1)),
    "min_new_tokens": GenerationParam(_tokens(0)),
    "do_sample": GenerationParam(_boolean),
    "temperature": GenerationParam(_number(0.0, 2.0)),
    "top_p": GenerationParam(_number(0.0, 1.0, low_open=True)),
    "top_k": GenerationParam(_integer(0)),
    "min_p": GenerationParam(_number(0.0, 1.0)),
    "repetition_penalty": GenerationParam(_number(0.0, 10.0, low_open=True)),
    "num_beams": GenerationParam(_beams, frozenset({TRANSFORMERS})),
    "length_penalty": GenerationParam(_number(-10.0, 10.0), frozenset({TRANSFORMERS})),
    "early_stopping": GenerationParam(_boolean, frozenset({TRANSFORMERS})),
    "no_repeat_ngram_size": GenerationParam(_integer(0, 64), frozenset({TRANSFORMERS})),
    "typical_p": GenerationParam(_number(0.0, 1.0, low_open=True), frozenset({TRANSFORMERS})),
    "presence_penalty": GenerationParam(_number(-2.0, 2.0), frozenset({VLLM})),
    "frequency_penalty": GenerationParam(_number(-2.0, 2.0), frozenset({VLLM})),
    "seed": GenerationParam(_integer(0, 2**63 - 1), frozenset({VLLM})),
    "stop": GenerationParam(_stop, frozenset({VLLM})),
}


def accepted_names(engine: str = TRANSFORMERS) -> frozenset[str]:
    """The param names an engine accepts, aliases included."""
    names = {name for name, param in PARAMS.items() if engine in param.engines}
    return frozenset(names | {alias for alias, target in PARAM_ALIASES.items() if target in names})


def rename_aliases(params: dict[str, Any]) -> dict[str, Any]:
    renamed: dict[str, Any] = {}
    for key, value in params.items():
        target = PARAM_ALIASES.get(key, key)
        if target in renamed:
            raise InputError(f"`{key}` and `{target}` mean the same; send one")
        renamed[target] = value
    return renamed


def check_generation_params(
    params: dict[str, Any],
    limits: Limits,
    *,
    engine: str = TRANSFORMERS,
    what: str = "param(s)",
    passthrough: frozenset[str] = frozenset(),
    streaming: bool = False,
) -> dict[str, Any]:
    """Aliases renamed, unknown names refused (listing the accepted ones), every value checked against its bound.

    ``passthrough`` names are the handler's own params: returned unchanged for the handler to check.
    ``streaming``: the generation streams token by token, which beam search cannot (``num_beams`` must be 1).
    """
    accepted = accepted_names(engine) | passthrough
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(f"unknown {what}: {', '.join(unknown)} (accepted: {', '.join(sorted(accepted))})")
    checked = rename_aliases(params)
    for sent, value in params.items():  # errors name the param as the request spelled it
        name = PARAM_ALIASES.get(sent, sent)
        if name not in passthrough:
            checked[name] = PARAMS[name].check(sent, value, limits)
    if streaming and checked.get("num_beams", 1) != 1:
        raise InputError("num_beams must be 1 here: generation streams token by token, which beam search cannot")
    low, high = checked.get("min_new_tokens"), checked.get("max_new_tokens")
    if low is not None and high is not None and low > high:
        raise InputError(f"min_new_tokens ({low}) is larger than max_new_tokens ({high})")
    temperature = checked.get("temperature")
    if engine == TRANSFORMERS and temperature is not None and temperature < MIN_SAMPLING_TEMPERATURE:
        del checked["temperature"]
        checked["do_sample"] = False
    return checked
