"""The official bytez SDK pointed at a gateway under test (the SDK itself is not changed)."""

from __future__ import annotations

from bytez import Bytez  # type: ignore[import-untyped]


def bytez_sdk(gateway_url: str, key: str) -> Bytez:
    sdk = Bytez(key, dev=True)
    # Where the SDK sends its requests (its dev setting names another port).
    sdk._client.host = f"{gateway_url}/models/v2/"
    return sdk
