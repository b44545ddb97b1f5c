"""The rules the inventory's guarded writes follow (clusters/kube/store.py), on their own."""

from datetime import UTC, datetime, timedelta

from clusters.kube.store import clean, proven_gone, rv_older

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_resource_versions_compare_as_integers_and_anything_else_is_never_older():
    assert rv_older("9", "10") and not rv_older("10", "9") and not rv_older("10", "10")
    assert rv_older("99999999999999999999", "100000000000000000000")  # beyond 64 bits
    for odd in ("", "abc", "10a", "١٢", None, "-1"):
        assert not rv_older(odd, "10") and not rv_older("10", odd)


def test_a_list_proves_gone_only_rows_not_newer_than_itself():
    assert proven_gone("10", T0, "10", T0) and proven_gone("9", T0, "10", T0)
    assert not proven_gone("11", T0 - timedelta(hours=1), "10", T0)  # written by a watch event after the list
    # versions that do not compare: gone if last written before the list began
    assert proven_gone("x", T0 - timedelta(seconds=1), "10", T0)
    assert not proven_gone("x", T0 + timedelta(seconds=1), "10", T0)
    assert proven_gone("10", T0 - timedelta(seconds=1), "", T0) and not proven_gone("10", T0, "", T0)


def test_cleaning_drops_nul_characters_from_decoded_values_and_keeps_a_literal_backslash_u0000():
    value = {"image": "x\x00", "literal": "x\\u0000", "nested": [{"k\x00": ["a\x00b", 1, None, True]}]}
    assert clean(value) == {"image": "x", "literal": "x\\u0000", "nested": [{"k": ["ab", 1, None, True]}]}
