"""Stories for the ``archive_logs`` action: old logs move to the archive and no file is ever lost.

Real files with real modification times in ``tmp_path``; the cross-file-system stories mount a
tmpfs as the archive folder, which needs root (CI runs as root; elsewhere they skip).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleetjobs.workers.archive import ROOTS_ENV, archive_logs

from fleetjobs.errors import ActionError

DAY = 86_400.0


class RecordingContext:
    """The action's own context interface, keeping every line written to each stream."""

    def __init__(self, on_verbose: Callable[[str], None] | None = None) -> None:
        self.location = "web01"
        self.stop_requested = False
        self.outputs: list[object] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.verbose_lines: list[str] = []
        self.on_verbose = on_verbose

    @property
    def should_stop(self) -> bool:
        return self.stop_requested

    def output(self, value: object) -> None:
        self.outputs.append(value)

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def verbose(self, message: str) -> None:
        self.verbose_lines.append(message)
        if self.on_verbose is not None:
            self.on_verbose(message)

    def checkpoint(self) -> float:
        return 0.0


def make_log(folder: Path, name: str, *, age_days: float, content: bytes = b"log line\n") -> Path:
    """Write a file and backdate its modification time by ``age_days``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_bytes(content)
    stamp = time.time() - age_days * DAY
    os.utime(target, (stamp, stamp))
    return target


def summary(archived: int, size: int, skipped: int = 0) -> dict[str, object]:
    return {"Server": "web01", "Archived": archived, "Bytes": size, "Skipped": skipped}


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "var-log-app"
    folder.mkdir()
    return folder


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    # Two levels that do not exist yet: the action must create parents too.
    return tmp_path / "archive" / "app"


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount tmpfs folders (another file system than tmp_path) and unmount them afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs as a cross-file-system archive folder")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"needs root allowed to mount a tmpfs; mount said: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=False)


def test_old_matching_logs_move_and_everything_else_stays(log_dir: Path, archive_dir: Path) -> None:
    # given two old logs, a fresh log, an old file of another kind and an old folder named .log
    old_a = make_log(log_dir, "a.log", age_days=10, content=b"a" * 100)
    old_b = make_log(log_dir, "b.log", age_days=8, content=b"b" * 50)
    make_log(log_dir, "c.log", age_days=1)
    make_log(log_dir, "notes.txt", age_days=30)
    make_log(log_dir / "rotated.log", "inner.log", age_days=30)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (old_a, old_b)}
    ctx = RecordingContext()

    # when logs older than a week are archived
    result = archive_logs(ctx, str(log_dir), str(archive_dir), days=7)

    # then only the two old .log files moved, with their contents and times, and are counted
    assert result == summary(archived=2, size=150)
    assert sorted(os.listdir(archive_dir)) == ["a.log", "b.log"]
    assert (archive_dir / "a.log").read_bytes() == b"a" * 100
    assert (archive_dir / "b.log").read_bytes() == b"b" * 50
    assert {n: (archive_dir / n).stat().st_mtime_ns for n in mtimes} == mtimes
    assert sorted(os.listdir(log_dir)) == ["c.log", "notes.txt", "rotated.log"]
    assert (log_dir / "rotated.log" / "inner.log").exists()
    # and each move was reported, nothing went wrong
    assert ctx.verbose_lines == [
        f"archived {old_a} -> {archive_dir / 'a.log'}",
        f"archived {old_b} -> {archive_dir / 'b.log'}",
    ]
    assert ctx.errors == [] and ctx.warnings == []


def test_the_pattern_decides_which_names_are_archived(log_dir: Path, archive_dir: Path) -> None:
    # given old files of several names
    make_log(log_dir, "app-2024-01.log", age_days=40)
    make_log(log_dir, "app-2024-02.log", age_days=20)
    make_log(log_dir, "db.log", age_days=40)

    # when only the app logs are asked for
    result = archive_logs(RecordingContext(), str(log_dir), str(archive_dir), pattern="app-*.log")

    # then the db log stays
    assert result["Archived"] == 2
    assert sorted(os.listdir(archive_dir)) == ["app-2024-01.log", "app-2024-02.log"]
    assert os.listdir(log_dir) == ["db.log"]


def test_a_second_run_archives_nothing_new(log_dir: Path, archive_dir: Path) -> None:
    # given old logs that were archived once
    make_log(log_dir, "a.log", age_days=9)
    make_log(log_dir, "b.log", age_days=9)
    first = archive_logs(RecordingContext(), str(log_dir), str(archive_dir))

    # when the same archiving runs again
    second = archive_logs(RecordingContext(), str(log_dir), str(archive_dir))

    # then nothing more moved and the archive holds each file once
    assert first["Archived"] == 2
    assert second == summary(archived=0, size=0)
    assert sorted(os.listdir(archive_dir)) == ["a.log", "b.log"]


def test_an_archive_folder_inside_the_log_folder_is_not_rescanned(log_dir: Path) -> None:
    # given an archive folder that lives inside the log folder
    inner = log_dir / "archive"
    make_log(log_dir, "a.log", age_days=9)

    # when archiving runs twice
    first = archive_logs(RecordingContext(), str(log_dir), str(inner))
    second = archive_logs(RecordingContext(), str(log_dir), str(inner))

    # then the file moved once and stays put
    assert (first["Archived"], second["Archived"]) == (1, 0)
    assert os.listdir(inner) == ["a.log"]


def test_a_name_taken_in_the_archive_gets_a_suffix_and_every_file_survives(
    log_dir: Path, archive_dir: Path
) -> None:
    # given an archive that already holds app.log and app.1.log, and a new old app.log
    make_log(archive_dir, "app.log", age_days=60, content=b"archived in March\n")
    make_log(archive_dir, "app.1.log", age_days=30, content=b"archived in April\n")
    source = make_log(log_dir, "app.log", age_days=10, content=b"written in May\n")
    ctx = RecordingContext()

    # when it is archived
    result = archive_logs(ctx, str(log_dir), str(archive_dir))

    # then it takes the first free numbered name and nothing was overwritten
    assert result == summary(archived=1, size=len(b"written in May\n"))
    assert (archive_dir / "app.log").read_bytes() == b"archived in March\n"
    assert (archive_dir / "app.1.log").read_bytes() == b"archived in April\n"
    assert (archive_dir / "app.2.log").read_bytes() == b"written in May\n"
    assert not source.exists()
    assert ctx.verbose_lines == [f"archived {source} -> {archive_dir / 'app.2.log'}"]


def test_a_dry_run_moves_nothing_and_says_what_it_would_do(
    log_dir: Path, archive_dir: Path
) -> None:
    # given two old logs and a fresh one
    make_log(log_dir, "a.log", age_days=10, content=b"12345")
    make_log(log_dir, "b.log", age_days=10, content=b"123")
    make_log(log_dir, "c.log", age_days=0)
    ctx = RecordingContext()

    # when archiving is rehearsed
    result = archive_logs(ctx, str(log_dir), str(archive_dir), dry_run=True)

    # then the counts are what a real run would report, and nothing moved or was created
    assert result == summary(archived=2, size=8)
    assert sorted(os.listdir(log_dir)) == ["a.log", "b.log", "c.log"]
    assert not archive_dir.exists()
    assert ctx.verbose_lines == [
        f"would archive {log_dir / 'a.log'} -> {archive_dir / 'a.log'}",
        f"would archive {log_dir / 'b.log'} -> {archive_dir / 'b.log'}",
    ]


def test_a_missing_log_folder_is_a_warning_not_a_failure(tmp_path: Path, archive_dir: Path) -> None:
    # given a host without the log folder
    missing = tmp_path / "no-such-folder"
    ctx = RecordingContext()

    # when archiving runs there
    result = archive_logs(ctx, str(missing), str(archive_dir))

    # then it warns, reports zero, and creates nothing
    assert ctx.warnings == [f"{missing}: Log path not found"]
    assert result == summary(archived=0, size=0)
    assert ctx.errors == []
    assert not archive_dir.exists()


def test_a_file_that_vanishes_mid_run_is_reported_and_skipped(
    log_dir: Path, archive_dir: Path
) -> None:
    # given three old logs, the second of which is deleted right after the first one moves
    make_log(log_dir, "a.log", age_days=10, content=b"aaaa")
    doomed = make_log(log_dir, "b.log", age_days=10)
    make_log(log_dir, "c.log", age_days=10, content=b"cc")

    def delete_b(message: str) -> None:
        if message.startswith(f"archived {log_dir / 'a.log'}"):
            doomed.unlink()

    ctx = RecordingContext(on_verbose=delete_b)

    # when archiving runs
    result = archive_logs(ctx, str(log_dir), str(archive_dir))

    # then the vanished file is one clear error and one skip, and the run carried on
    assert result == summary(archived=2, size=6, skipped=1)
    assert len(ctx.errors) == 1
    assert str(doomed) in ctx.errors[0] and "vanished" in ctx.errors[0]
    assert sorted(os.listdir(archive_dir)) == ["a.log", "c.log"]


def test_a_stop_request_ends_the_run_between_files(log_dir: Path, archive_dir: Path) -> None:
    # given three old logs and a job that is asked to stop after the first move
    for name in ("a.log", "b.log", "c.log"):
        make_log(log_dir, name, age_days=10, content=b"x")
    ctx = RecordingContext()
    ctx.on_verbose = lambda message: setattr(ctx, "stop_requested", True)

    # when archiving runs
    result = archive_logs(ctx, str(log_dir), str(archive_dir))

    # then it reports the one file done and leaves the rest where they were
    assert result == summary(archived=1, size=1)
    assert os.listdir(archive_dir) == ["a.log"]
    assert sorted(os.listdir(log_dir)) == ["b.log", "c.log"]


class Stopped(BaseException):
    """What the job runtime raises from its signal handler to stop an action."""


def test_a_stop_interrupt_mid_move_still_leaves_the_file_in_exactly_one_place(
    log_dir: Path, archive_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a runtime that stops actions by raising from a signal sent to their thread
    def raise_stopped(signum: int, frame: object) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGUSR2, raise_stopped)
    # and a stop that lands the instant the archive has the file, before the source is gone
    # (only a wrapped os.link can hit that window exactly)
    real_link = os.link

    def link_then_stop(src: str, dst: str, **kwargs: bool) -> None:
        real_link(src, dst, **kwargs)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)

    monkeypatch.setattr(os, "link", link_then_stop)
    moved = make_log(log_dir, "a.log", age_days=10, content=b"first\n")
    make_log(log_dir, "b.log", age_days=10, content=b"second\n")

    # when archiving runs and is stopped
    try:
        with pytest.raises(Stopped):
            archive_logs(RecordingContext(), str(log_dir), str(archive_dir))
    finally:
        signal.signal(signal.SIGUSR2, previous)

    # then the interrupted move completed: a.log is in the archive only, b.log was not touched
    assert not moved.exists()
    assert os.listdir(archive_dir) == ["a.log"]
    assert (archive_dir / "a.log").read_bytes() == b"first\n"
    assert os.listdir(log_dir) == ["b.log"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"days": -1}, "days"),
        ({"days": float("nan")}, "days"),
        ({"path": ""}, "path"),
        ({"archive_path": ""}, "archive_path"),
        ({"archive_path": "SAME"}, "is the log folder"),
        # a relative folder is the worker's own working folder's: wherever it was started
        ({"path": "logs"}, "path must be an absolute path"),
        ({"archive_path": "archive"}, "archive_path must be an absolute path"),
    ],
)
def test_invalid_arguments_are_refused(
    log_dir: Path, archive_dir: Path, change: dict[str, object], message: str
) -> None:
    # given a log to archive and one bad argument
    make_log(log_dir, "a.log", age_days=10)
    arguments: dict[str, object] = {"path": str(log_dir), "archive_path": str(archive_dir)}
    arguments.update(change)
    if arguments["archive_path"] == "SAME":
        arguments["archive_path"] = str(log_dir) + os.sep

    # when / then the action refuses before touching anything
    with pytest.raises(ValueError, match=message):
        archive_logs(RecordingContext(), **arguments)  # type: ignore[arg-type]
    assert os.listdir(log_dir) == ["a.log"]


def test_a_move_to_another_file_system_copies_safely(
    log_dir: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    # given an archive folder on a tmpfs that already holds an app.log
    archive = mount_tmpfs("16m") / "archive"
    assert os.stat(archive.parent).st_dev != os.stat(log_dir).st_dev
    make_log(archive, "app.log", age_days=90, content=b"from last quarter\n")
    # and old logs of several sizes, plus a fresh one
    contents = {
        "app.log": b"this quarter\n",
        "empty.log": b"",
        "mid.log": bytes(range(256)) * 1200,
        "big.log": b"0123456789abcdef" * 200_000,
    }
    sources = {
        name: make_log(log_dir, name, age_days=15, content=data) for name, data in contents.items()
    }
    mtimes = {name: path.stat().st_mtime_ns for name, path in sources.items()}
    make_log(log_dir, "fresh.log", age_days=0.1)
    ctx = RecordingContext()

    # when they are archived across file systems
    result = archive_logs(ctx, str(log_dir), str(archive))

    # then every old file is in exactly one place: the archive, with its content and time
    assert result == summary(archived=4, size=sum(len(d) for d in contents.values()))
    assert ctx.errors == []
    assert os.listdir(log_dir) == ["fresh.log"]
    landed = {name: name for name in contents} | {"app.log": "app.1.log"}
    for name, data in contents.items():
        copy = archive / landed[name]
        assert copy.read_bytes() == data, name
        assert copy.stat().st_mtime_ns == mtimes[name], name
    assert (archive / "app.log").read_bytes() == b"from last quarter\n"
    # and no partial copies were left behind
    assert sorted(os.listdir(archive)) == sorted([*landed.values(), "app.log"])


def test_a_failed_copy_to_another_file_system_leaves_the_source_untouched(
    log_dir: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    # given an archive file system too small for one of the logs
    archive = mount_tmpfs("256k")
    big = make_log(log_dir, "big.log", age_days=10, content=b"x" * (1024 * 1024))
    small = make_log(log_dir, "small.log", age_days=10, content=b"fits\n")
    ctx = RecordingContext()

    # when archiving runs
    result = archive_logs(ctx, str(log_dir), str(archive))

    # then the big log is reported and skipped, still whole in its place, with no partial left
    assert result == summary(archived=1, size=5, skipped=1)
    assert len(ctx.errors) == 1
    assert str(big) in ctx.errors[0] and "No space left" in ctx.errors[0]
    assert big.read_bytes() == b"x" * (1024 * 1024)
    assert not small.exists()
    assert os.listdir(archive) == ["small.log"]


def test_a_private_log_stays_private_and_its_owners_across_file_systems(
    log_dir: Path, mount_tmpfs: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a log only its owner may read, owned by another user than the worker's
    archive = mount_tmpfs("1m")
    secret = make_log(log_dir, "secret.log", age_days=10, content=b"password=hunter2\n")
    os.chmod(secret, 0o600)
    os.chown(secret, 65534, 65534)
    seen: list[int] = []
    real_fchown = os.fchown

    def spy(fd: int, uid: int, gid: int) -> None:  # the partial copy, while it is written
        seen.append(os.fstat(fd).st_mode & 0o777)
        real_fchown(fd, uid, gid)

    monkeypatch.setattr(os, "fchown", spy)
    # when it is archived across file systems
    result = archive_logs(RecordingContext(), str(log_dir), str(archive))
    # then no one else could read its copy at any moment, and it keeps its owner and mode
    assert result == summary(archived=1, size=17)
    assert seen == [0o600]
    copied = (archive / "secret.log").stat()
    assert (copied.st_uid, copied.st_gid, copied.st_mode & 0o777) == (65534, 65534, 0o600)


def test_a_worker_given_archive_roots_archives_under_them_only(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a worker started with --archive-root for the logs and the store (what it sets for
    # its pool processes)
    store = tmp_path / "store"
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(log_dir), str(store)]))
    make_log(log_dir, "app.log", age_days=10)
    elsewhere = tmp_path / "etc"
    make_log(elsewhere, "passwd", age_days=10)
    (log_dir / "link").symlink_to(elsewhere)
    # then a folder outside them is refused, source or destination, through a symlink too
    for src, dst in (
        (elsewhere, store / "out"),
        (log_dir, tmp_path / "out"),
        (log_dir / "link", store / "out"),
    ):
        with pytest.raises(ActionError, match="outside the folders this host's operator allows"):
            archive_logs(RecordingContext(), str(src), str(dst), pattern="*")
    assert (elsewhere / "passwd").exists() and (log_dir / "app.log").exists()
    # and folders under them are archived as ever
    result = archive_logs(RecordingContext(), str(log_dir), str(store / "app"))
    assert result == summary(archived=1, size=9)


def test_the_workers_archive_root_confines_the_action_on_a_real_worker(
    redis_url: str, log_dir: Path, tmp_path: Path
) -> None:
    from fleetjobs import Config, Fleet, JobState
    from fleetjobs.embedded import LocalWorkers

    from .conftest import FAST, uniq

    cfg = Config(redis_url=redis_url, prefix=f"{uniq('ar')}:", **FAST)  # type: ignore[arg-type]
    make_log(log_dir, "app.log", age_days=10)
    roots = ["--archive-root", str(log_dir), "--archive-root", str(tmp_path / "store")]
    with LocalWorkers(cfg, [["arc"]], extra_args=roots), Fleet(config=cfg) as fleet:
        # a job asking outside the roots fails with the reason, and nothing moved
        job = fleet.start("archive_logs", str(log_dir), str(tmp_path / "out"), locations="arc")
        assert fleet.wait([job], timeout=30) and job.state is JobState.FAILED
        assert "outside the folders this host's operator allows" in (job.reason or "")
        assert (log_dir / "app.log").exists()
        # and one inside them runs as ever
        job = fleet.start("archive_logs", str(log_dir), str(tmp_path / "store"), locations="arc")
        assert fleet.wait([job], timeout=30) and job.state is JobState.COMPLETED


def test_a_partial_copy_left_by_a_run_that_died_is_removed_by_the_next(
    log_dir: Path, archive_dir: Path
) -> None:
    # given the partial copy a run killed mid-copy (another file system) left, its inode
    # touched since (a chmod, a relabel); one a live run is finishing, with its source's
    # old modification time already set on it and its lock held; one just made
    archive_dir.mkdir(parents=True)
    stale = make_log(archive_dir, ".huge.log.partial-f32e1faf0527", age_days=10)
    os.chmod(stale, 0o640)
    live = make_log(archive_dir, ".big.log.partial-0123456789ab", age_days=10)
    new = make_log(archive_dir, ".new.log.partial-ba9876543210", age_days=0)
    kept = make_log(archive_dir, ".notes.partial-mine", age_days=10)  # not of our making
    make_log(log_dir, "app.log", age_days=10)
    held = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        # when the next run archives
        ctx = RecordingContext()
        assert archive_logs(ctx, str(log_dir), str(archive_dir)) == summary(1, 9)
    finally:
        os.close(held)
    # then the dead run's copy is gone (said), the live one and the rest left alone
    assert not stale.exists() and live.exists() and new.exists() and kept.exists()
    assert any("partial copy left by a run that died" in line for line in ctx.verbose_lines)
