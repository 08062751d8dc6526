"""One rule for a time a person types: epoch seconds or ISO-8601, a time without a zone is UTC, everywhere."""

from __future__ import annotations

import pytest
from wiredraw.core.timeparse import parse_time
from wiredraw.plugins.net_zeek.source import parse_time as since_time


def test_a_time_without_a_zone_is_utc():
    assert parse_time("2024-04-29T16:00") == 1714406400.0
    assert parse_time("2024-04-29 16:00:00") == 1714406400.0


def test_probe_since_and_query_at_name_the_same_instant():
    """`probe --since 2024-04-29T16:00` and `query --at 2024-04-29T16:00` (one reading, wherever the machine is)."""
    for text in ("2024-04-29T16:00", "2024-04-29T18:00+02:00", "2024-04-29T16:00Z", "1714406400"):
        assert since_time(text) == parse_time(text) == 1714406400.0


def test_the_error_names_the_option_and_the_rule():
    with pytest.raises(ValueError, match=r"--since 'soon': expected epoch seconds .* UTC unless a zone"):
        since_time("soon")
    with pytest.raises(ValueError, match="not a finite number"):
        parse_time("nan")
