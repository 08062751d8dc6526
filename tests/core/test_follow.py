"""wiredraw.core.follow: complete lines only, bounded polls, exact resume, rotation and truncation."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wiredraw.core.follow import FollowedFile


def upper(line: bytes, at: int) -> tuple[int, str] | None:
    text = line.decode().strip()
    return None if text == "bad" else (at, text.upper())


def test_whole_lines_only_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    assert FollowedFile(path).poll(10, upper) == []  # not there yet
    path.write_bytes(b"one\n\nbad\ntwo\nthree\nfour")
    f = FollowedFile(path)
    assert f.poll(2, upper) == [(0, "ONE"), (9, "TWO")]  # blank and bad lines do not count against the bound
    assert f.poll(10, upper) == [(13, "THREE")]  # "four" is still being written
    assert f.poll(10, upper) == []
    with path.open("ab") as out:
        out.write(b"\n")
    assert f.poll(10, upper) == [(19, "FOUR")]
    assert f.lines == 6 and f.offset == path.stat().st_size and f.reopened == 0


def test_from_end_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"old\n")
    f = FollowedFile(path, from_end=True)
    assert f.poll(10, upper) == []
    with path.open("ab") as out:
        out.write(b"new\nnext\n")
    assert f.poll(1, upper) == [(4, "NEW")]
    token = json.loads(json.dumps(f.state()))
    assert token == {"v": 1, "path": str(path), "inode": os.stat(path).st_ino, "offset": 8}
    again = FollowedFile(path, from_end=True)
    again.restore(token)
    assert again.poll(10, upper) == [(8, "NEXT")]
    other = FollowedFile(tmp_path / "b.log")
    other.restore(token)  # another file's token: ignored
    assert other.offset == 0 and other.inode is None
    for bad in (None, {"v": 2, "path": str(path)}, {**token, "offset": -1}, {**token, "inode": "x"}):
        fresh = FollowedFile(path)
        fresh.restore(bad)
        assert fresh.poll(10, upper) == [(0, "OLD"), (4, "NEW"), (8, "NEXT")]


def test_replaced_or_truncated_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\n")
    f = FollowedFile(path)
    assert len(f.poll(10, upper)) == 2
    path.write_bytes(b"x\n")  # truncated
    assert f.poll(10, upper) == [(0, "X")] and f.reopened == 1
    path.rename(tmp_path / "a.log.1")  # rotated away (it keeps its inode) ...
    path.write_bytes(b"y\n")  # ... and a new file of the same size: another inode
    assert f.poll(10, upper) == [(0, "Y")] and f.reopened == 2
