"""Pure builders: a ModelCluster and the catalog in, Kubernetes objects and decisions out.

No I/O here: no API client, no asyncio, no network; every function is tested with plain
dicts (``tests/unit/test_builders.py`` and friends).
"""
