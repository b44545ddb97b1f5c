"""The watcher's pacing of the cyclic garbage collector (portal/garbage.py)."""

import gc
import weakref

import pytest

from portal.garbage import YOUNG, pace_for_a_large_heap


class Cycle:
    def __init__(self):
        self.me = self


@pytest.fixture
def paced():
    before = gc.get_threshold()
    pace_for_a_large_heap()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_what_was_loaded_is_frozen_and_young_collections_wait_for_more_objects(paced):
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG


def test_cyclic_garbage_is_still_collected_once_enough_objects_came(paced):
    cycle = Cycle()
    gone = weakref.ref(cycle)
    del cycle
    assert gone() is not None, "a young collection waits for YOUNG objects"
    keep = [[n] for n in range(YOUNG + 1)]  # allocated and kept: a young collection runs
    assert gone() is None
    del keep
