"""Rendering: timestamps and JSON output stay exactly what scripts parse, however large the output."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from reconciler import render


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_iso_matches_datetime_to_the_millisecond(ts):
    """render.iso gives the same text as datetime's isoformat(timespec="milliseconds") in UTC."""
    expected = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert render.iso(ts) == expected


def test_iso_of_none_is_none():
    """A missing time stays null in JSON."""
    assert render.iso(None) is None


def test_large_json_output_is_one_object_per_line_and_the_same_data():
    """Past LARGE_OUTPUT objects, -o json prints one compact object per line; it parses to the same list."""
    small = [{"id": i, "labels": {"a": "b"}} for i in range(3)]
    large = [{"id": i, "labels": {"a": "b"}} for i in range(render.LARGE_OUTPUT + 1)]
    assert json.loads(render.dump(small, "json")) == small and "\n  " in render.dump(small, "json")
    text = render.dump(large, "json")
    assert json.loads(text) == large
    assert text.count("\n") == len(large) + 2
