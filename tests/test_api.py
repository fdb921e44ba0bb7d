"""The public API: every name in ketastats.__all__ resolves."""

from __future__ import annotations

import ketastats


def test_every_public_name_resolves():
    for name in ketastats.__all__:
        assert getattr(ketastats, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ketastats.nope  # noqa: B018
