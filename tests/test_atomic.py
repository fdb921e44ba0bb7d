"""Atomic writes: an output appears whole or not at all."""

from __future__ import annotations

import pytest

from ketastats._atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "results.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_write_keeps_the_previous_version(tmp_path):
    target = tmp_path / "results.json"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "results.json"
    stale = tmp_path / ".results.json.abc123.tmp"
    stale.write_text("partial")
    other = tmp_path / ".other.json.abc.tmp"
    other.write_text("not ours")
    write_text_atomic(target, "ok\n")
    assert target.read_text() == "ok\n"
    assert not stale.exists()
    assert other.exists()


def test_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "r.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
