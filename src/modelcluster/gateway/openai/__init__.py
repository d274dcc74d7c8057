"""The OpenAI-compatible API (``/models/v2/openai/v1/...``) as translations onto the runtime's ``POST /run``.

- :mod:`.protocol`: the request models and their parsing, OpenAI's error body, model objects;
- :mod:`.translate`: request -> the runtime's generation params, its token counts, finish reasons, stop sequences
  and errors;
- :mod:`.serving`: what every route family shares (the answer's envelope, chunks, the task check);
  :mod:`.streaming`: the runtime's stream events -> OpenAI's SSE stream;
- :mod:`.serving_chat`, :mod:`.serving_completion`: one family each (``chat/completions``, ``completions``);
- :mod:`.routes`: the aiohttp handlers and the route table the gateway's app registers.
"""
