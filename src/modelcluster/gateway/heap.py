"""The gateway's garbage collector, set for a server that allocates much per request and keeps little.

Python's cyclic collector runs on allocation counts: by default its youngest generation is collected after 700
more container allocations than deallocations, which a few dozen concurrent requests reach hundreds of times a
second, and every tenth of those collections looks at the next generation, and so on up to full collections of
the whole heap (the catalog, the watched objects, the imported modules). Nearly all a request allocates is freed
by reference counting as soon as its answer is sent, so those collections find next to nothing.

:func:`settle` runs once the gateway has started (its watches synced): one full collection, then
:func:`gc.freeze` moves every object that survived start-up out of the collector's view for good, and the
youngest generation is collected only after ``young_threshold`` net allocations. Cyclic garbage is still
collected, later; what start-up froze is never scanned again.
"""

from __future__ import annotations

import gc


def settle(young_threshold: int) -> int:
    """Collect, freeze what survived start-up, and set the youngest generation's threshold (0 keeps Python's).

    Returns the number of objects frozen.
    """
    gc.collect()
    gc.freeze()
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()
