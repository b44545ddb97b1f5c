"""Python's cyclic garbage collector, paced for a process that allocates a great deal and keeps a
large heap: the watcher.

The collector examines the youngest objects every 700 objects allocated (and not yet freed), the
next generation every tenth time, and every object once a quarter more than it kept last time have
reached the oldest generation.  A watcher's lists and changes wait for their writers for seconds:
they live through dozens of young collections and reach the oldest generation by the thousand, so
full collections of millions of objects followed one another.  Measured at 2,000 clusters: 62 in a
shard's first five minutes, 0.6-0.9 s each, a fifth of its time on the one interpreter lock, and
12 of the 37 s of a takeover.

So the young collections wait for YOUNG objects: what waits a second for its writer has been
written and freed by then, by reference counting, and never reaches the oldest generation.  What
the process loaded before its work (Django, the modules) is frozen: never examined again.
"""

import gc

YOUNG = 50_000  # objects allocated and not yet freed between two young collections (Python's default: 700)
MIDDLE = 20  # young collections between two of the middle generation (default: 10)


def pace_for_a_large_heap():
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, gc.get_threshold()[2])
