"""Closed models through the caller's own provider key: OpenAI, Anthropic, Google Gemini, Cohere and Mistral.

One pure translation module per provider (:mod:`.openai_api`, :mod:`.anthropic_api`, :mod:`.google_api`,
:mod:`.cohere_api`, :mod:`.mistral_api`) turns the unified chat request (:mod:`.unified`) into the provider's
request and its answers, streams and errors back; :mod:`.client` holds one pooled HTTP client per provider and
:mod:`.serving` answers the native and OpenAI route families with them. See ``docs/providers.md``.
"""
