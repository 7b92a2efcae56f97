"""``postern.serve.run_marks``: a mark per running process, and the marks of runs that ended
without removing theirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from postern.serve import run_marks


def marks(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / run_marks.DIRECTORY).iterdir())


def test_first_start_and_clean_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"  # made if missing
    mark = run_marks.acquire(data_dir)
    assert not mark.previous_run_unclean
    assert len(marks(data_dir)) == 1
    mark.release()
    mark.release()  # twice is harmless
    assert marks(data_dir) == []
    again = run_marks.acquire(data_dir)
    assert not again.previous_run_unclean
    again.release()


def test_a_live_process_mark_is_left_alone(tmp_path: Path) -> None:
    first = run_marks.acquire(tmp_path)
    second = run_marks.acquire(tmp_path)  # flock: another open file description, so a conflict
    assert not second.previous_run_unclean
    assert len(marks(tmp_path)) == 2
    first.release()
    second.release()
    assert marks(tmp_path) == []


def test_the_mark_of_a_killed_process_is_found_once(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import os, sys; from pathlib import Path; from postern.serve import run_marks; run_marks.acquire(Path(sys.argv[1])); os._exit(9)", str(tmp_path)],
        check=False,
    )
    assert child.returncode == 9
    assert len(marks(tmp_path)) == 1  # left behind, its lock gone with the process
    mark = run_marks.acquire(tmp_path)
    assert mark.previous_run_unclean
    assert len(marks(tmp_path)) == 1  # the stale one removed, this one made
    mark.release()
    assert not run_marks.acquire(tmp_path).previous_run_unclean  # found once


def test_a_mark_left_half_made_is_removed_without_a_verdict(tmp_path: Path) -> None:
    directory = tmp_path / run_marks.DIRECTORY
    directory.mkdir()
    (directory / ".half-made").write_bytes(b"")
    mark = run_marks.acquire(tmp_path)
    assert not mark.previous_run_unclean
    assert not (directory / ".half-made").exists()
    mark.release()


def test_marks_are_not_inherited(tmp_path: Path) -> None:
    mark = run_marks.acquire(tmp_path)
    assert mark._fd is not None and not os.get_inheritable(mark._fd)
    mark.release()


def test_a_data_directory_without_room_for_marks_does_not_stop_the_start(tmp_path: Path) -> None:
    (tmp_path / run_marks.DIRECTORY).write_bytes(b"a file where the directory should be")
    mark = run_marks.acquire(tmp_path)
    assert not mark.previous_run_unclean
    mark.release()


def test_something_else_among_the_marks_is_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / run_marks.DIRECTORY
    (directory / "not-a-mark").mkdir(parents=True)
    mark = run_marks.acquire(tmp_path)
    assert not mark.previous_run_unclean
    assert (directory / "not-a-mark").is_dir()
    mark.release()
