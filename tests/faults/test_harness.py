"""The harness itself must be able to fail: a clean failure passes, a leftover file or a traceback does not."""

from __future__ import annotations

import subprocess

import pytest

from .harness import assert_clean_failure, diff, snapshot


def _proc(code: int, stderr: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], code, "", stderr)


def test_snapshot_sees_hidden_partials_and_changes(tmp_path):
    (tmp_path / "in.txt").write_text("a")
    before = snapshot(tmp_path)
    (tmp_path / ".out.x.partial.tif").write_text("b")
    (tmp_path / "in.txt").write_text("c")
    assert diff(before, snapshot(tmp_path)) == ["left behind: .out.x.partial.tif", "changed: in.txt"]


def test_assert_clean_failure_rejects_tracebacks_extra_lines_and_wrong_codes(tmp_path):
    before = snapshot(tmp_path)
    assert_clean_failure(_proc(2, "error: x.tif: bad; fix it\n"), before, tmp_path, ("x.tif",))
    for proc in (
        _proc(1, "error: x.tif: bad\n"),
        _proc(2, "Traceback (most recent call last):\nerror: x\n"),
        _proc(2, "warning\nerror: x.tif\n"),
        _proc(2, "error: y.tif\n"),
    ):
        with pytest.raises(AssertionError):
            assert_clean_failure(proc, before, tmp_path, ("x.tif",))
