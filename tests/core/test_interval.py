"""The interval index's geometry (core/interval.py): one definition for net_zeek, proc_events and the Lua."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wiredraw.core.interval import DEFAULT_INDEX, IntervalIndex

INDEX = DEFAULT_INDEX
T0 = 1_541_240_000.0


def test_the_default_geometry():
    assert (INDEX.base, INDEX.factor, INDEX.levels) == (60, 4, 13)
    assert [INDEX.size(k) for k in (0, 1, 2, 12)] == [60, 240, 960, 60 * 4**12]
    assert INDEX.size(12) / (365.25 * 86400) > 31  # about 32 years in the last level


def test_a_level_holds_the_durations_up_to_its_size():
    for k in range(INDEX.levels):
        size = INDEX.size(k)
        assert INDEX.level_of(size) == k
        assert INDEX.level_of(math.nextafter(size, 0.0)) == k
        if k > 0:
            assert INDEX.level_of(math.nextafter(size / INDEX.factor, math.inf)) == k
        if k < INDEX.levels - 1:
            assert INDEX.level_of(math.nextafter(size, math.inf)) == k + 1
    assert INDEX.level_of(INDEX.size(INDEX.levels - 1) * 10) == INDEX.levels - 1  # the last level takes the rest
    assert INDEX.level_of(0) == INDEX.level_of(-5) == INDEX.level_of(math.nan) == 0
    assert INDEX.level_of(math.inf) == INDEX.levels - 1


def test_a_bucket_is_the_floor_of_start_over_size():
    assert INDEX.bucket_of(0, 119.999) == 1 and INDEX.bucket_of(0, 120.0) == 2 and INDEX.bucket_of(1, 239.0) == 0
    assert INDEX.bucket_of(0, -0.5) == -1  # floor, not truncation
    assert INDEX.place(T0, 61.0) == (1, math.floor(T0 / 240))
    start = math.nextafter(1_541_240_040.0, 0.0)  # a hair below an edge: the same IEEE division then floor as Lua
    assert INDEX.bucket_of(0, start) == math.floor(start / 60)


def test_a_point_query_reads_at_most_two_buckets_per_level():
    buckets = INDEX.buckets(T0 + 17.3, T0 + 17.3)
    per_level = {k: [b for kk, b in buckets if kk == k] for k in range(INDEX.levels)}
    assert all(1 <= len(bs) <= 2 for bs in per_level.values())
    assert [k for k, _ in buckets] == sorted(k for k, _ in buckets)  # level by level


def test_a_query_reads_every_bucket_an_active_interval_can_sit_in():
    rng = random.Random(5)
    for _ in range(3000):
        k = rng.randrange(INDEX.levels)
        duration = rng.uniform(0, INDEX.size(k))
        start = T0 + rng.uniform(-1e6, 1e6)
        t0 = start + rng.uniform(0, duration)  # the interval is active at t0 (and over [t0, t1])
        t1 = t0 + rng.choice([0.0, rng.uniform(0, 5000)])
        assert INDEX.place(start, duration) in set(INDEX.buckets(t0, t1))


@given(st.floats(0, 1e6), st.floats(0, 1), st.floats(0, 1))
def test_the_interval_is_found_at_its_start_and_its_end(offset, fraction, level_fraction):
    k = min(int(level_fraction * INDEX.levels), INDEX.levels - 1)
    duration = fraction * INDEX.size(k)
    start = T0 + offset
    where = INDEX.place(start, duration)
    assert where in INDEX.buckets(start, start) and where in INDEX.buckets(start + duration, start + duration)


def test_another_geometry():
    small = IntervalIndex(base=10, factor=2, levels=3)
    assert [small.size(k) for k in range(3)] == [10, 20, 40]
    assert [small.level_of(d) for d in (10, 11, 20, 21, 1000)] == [0, 1, 1, 2, 2]
    assert small.buckets(25, 25) == [(0, 1), (0, 2), (1, 0), (1, 1), (2, -1), (2, 0)]


@pytest.mark.parametrize("kw", [{"base": 0}, {"factor": 1}, {"levels": 0}, {"base": 1.5}, {"levels": True}])
def test_a_bad_geometry_is_refused_naming_the_field(kw):
    with pytest.raises(ValueError, match=f"IntervalIndex {next(iter(kw))}: expected an int"):
        IntervalIndex(**kw)


def test_the_constants_go_into_a_lua_script():
    assert INDEX.lua_constants() == {"INDEX_BASE": "60", "INDEX_FACTOR": "4", "INDEX_LEVELS": "13"}
    source = "local B, F, L = @INDEX_BASE@, @INDEX_FACTOR@, @INDEX_LEVELS@\nlocal at = s:match('^x$') .. '@' .. p\n"
    assert INDEX.fill_lua(source) == "local B, F, L = 60, 4, 13\nlocal at = s:match('^x$') .. '@' .. p\n"
    assert IntervalIndex(10, 2, 5).fill_lua("x = @INDEX_LEVELS@") == "x = 5"


def test_a_script_with_an_unknown_or_no_placeholder_is_refused():
    with pytest.raises(ValueError, match=r"@INDEX_SIZE@: expected one of INDEX_BASE, INDEX_FACTOR, INDEX_LEVELS"):
        INDEX.fill_lua("local s = @INDEX_SIZE@")
    with pytest.raises(ValueError, match="no interval index placeholder"):
        INDEX.fill_lua("local s = 60")
