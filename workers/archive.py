"""Parallel log archiving: the ``archive_logs`` action body run on every host of the fleet.

Each host moves its own old log files (by name pattern and modification time) from a log
folder into an archive folder and answers with one summary record (``Server``, ``Archived``,
``Bytes``, ``Skipped``), so one fleet-wide job archives every server at once. The move never
loses a file: an existing archive name is never overwritten (the newcomer gets a ``.1``, ``.2``...
suffix, chosen atomically), a move to another file system copies to a hidden partial file that is
fsynced and size-checked before it takes its final name and before the source is removed, and any
failure leaves the source where it was and is reported per file instead of aborting the run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import os
import re
import secrets
import signal
import stat
import time
from collections.abc import Iterator
from typing import Protocol

from fleetjobs.errors import ActionError

__all__ = ["ActionContext", "archive_logs"]

_SECONDS_PER_DAY = 86_400
# a partial copy no run holds (its flock: a run copying keeps one from the file's creation
# until it is published; the kernel drops it when the run dies, however it dies) was left by
# a run killed mid-copy (SIGKILL, the OOM killer): the next run removes it, once its
# modification time is this old (a run that just made its file takes its lock a moment later)
_STALE_PARTIAL = 60.0
_PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]{12}$")
_COPY_CHUNK = 1024 * 1024
# A fleet-wide run must not spin forever on a pathological archive folder.
_MAX_SUFFIX = 100_000
# Errors from os.link that mean "this file system (or policy) will not hard-link", as opposed
# to a real failure; on these the move falls back to an exclusive placeholder plus rename.
_NO_HARDLINK_ERRNOS = frozenset(
    {errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}
)


class ActionContext(Protocol):
    """What ``archive_logs`` needs from the job machinery that runs it on a host."""

    @property
    def location(self) -> str:
        """The name of the host the action runs on."""

    @property
    def should_stop(self) -> bool:
        """True once the job has been asked to stop; checked between files."""

    def output(self, value: object) -> None:
        """Write one record to the job's output stream."""

    def error(self, message: str) -> None:
        """Write a non-terminating error to the job's error stream."""

    def warning(self, message: str) -> None:
        """Write a line to the job's warning stream."""

    def verbose(self, message: str) -> None:
        """Write a line to the job's verbose stream."""

    def checkpoint(self) -> float:
        """A safe point between files: holds while the job is suspended."""


class _CrossDevice(Exception):
    """The same-file-system move was refused with EXDEV (e.g. two mounts of one file system)."""


class _CopyMismatch(Exception):
    """The copy on the archive side does not match the source; the source is kept."""


def archive_logs(
    ctx: ActionContext,
    path: str,
    archive_path: str,
    days: float = 7,
    pattern: str = "*.log",
    dry_run: bool = False,
) -> dict[str, object]:
    """Move this host's old log files from ``path`` into ``archive_path``.

    Only regular files directly in ``path`` (no recursion, no symlinks) whose name matches
    ``pattern`` and whose modification time is more than ``days`` days old are moved. A name
    already taken in the archive is never overwritten: the newcomer becomes ``app.1.log``,
    ``app.2.log``... Files that vanish, cannot be read or cannot be moved are reported with
    ``ctx.error`` and counted in ``Skipped``; the source of a failed move is left untouched.
    Files that are simply too new are neither moved nor counted.

    Args:
        ctx: The job context of this host (streams, host name, stop request).
        path: The folder holding the logs.
        archive_path: The folder to move them to; created, parents too, when missing.
        days: Minimum age in days (fractions allowed) of a file's modification time.
        pattern: ``fnmatch`` pattern the file name must match.
        dry_run: Report what would be archived (verbose ``would archive ...`` lines and the
            counts) without creating or moving anything.

    Returns:
        ``{"Server": host, "Archived": files moved, "Bytes": bytes moved, "Skipped": failures}``;
        when ``ctx.should_stop`` turns true the counts cover the files done before stopping.

    Raises:
        ValueError: If an argument is invalid or ``archive_path`` is ``path`` itself.
        OSError: If the archive folder cannot be created.
    """
    _validate(path, archive_path, days, pattern)
    path, archive_path = _within_roots(path, archive_path)
    summary: dict[str, object] = {"Server": ctx.location, "Archived": 0, "Bytes": 0, "Skipped": 0}
    if not os.path.isdir(path):
        if os.path.lexists(path):
            ctx.warning(f"{path}: Log path is not a directory")
        else:
            ctx.warning(f"{path}: Log path not found")
        return summary
    try:
        names = sorted(entry.name for entry in os.scandir(path) if _is_candidate(entry, pattern))
    except OSError as exc:
        ctx.error(f"{path}: cannot list the log folder: {_reason(exc)}")
        return summary
    if not dry_run:
        os.makedirs(archive_path, exist_ok=True)
        # realpath cannot see bind mounts or hard-linked folders; the inode can.
        if os.path.samefile(path, archive_path):
            raise ValueError(f"archive_path {archive_path!r} is the log folder {path!r} itself")
        _remove_stale_partials(ctx, archive_path)

    cutoff = time.time() - days * _SECONDS_PER_DAY
    archived = skipped = moved_bytes = 0
    planned: set[str] = set()  # dry run: names this run would already have taken
    for name in names:
        ctx.checkpoint()  # a safe point between files: a suspend holds here
        if ctx.should_stop:
            ctx.verbose(f"stop requested: archived {archived} file(s) before stopping")
            break
        src = os.path.join(path, name)
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            ctx.error(f"{src}: cannot archive: the file vanished before it could be moved")
            skipped += 1
            continue
        except OSError as exc:
            ctx.error(f"{src}: cannot archive: {_reason(exc)}")
            skipped += 1
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_mtime >= cutoff:
            continue
        if dry_run:
            dest = _first_free_name(archive_path, name, planned)
            planned.add(os.path.basename(dest))
            ctx.verbose(f"would archive {src} -> {dest}")
            archived += 1
            moved_bytes += st.st_size
            continue
        try:
            dest = _move(src, st, archive_path, name)
        except (OSError, _CopyMismatch) as exc:
            # A missing archive folder raises FileNotFoundError too, so look at the source.
            if isinstance(exc, FileNotFoundError) and not os.path.lexists(src):
                ctx.error(f"{src}: cannot archive: the file vanished before it could be moved")
            else:
                ctx.error(f"{src}: cannot archive: {_reason(exc)}")
            skipped += 1
            continue
        archived += 1
        moved_bytes += st.st_size
        ctx.verbose(f"archived {src} -> {dest}")
    summary.update(Archived=archived, Bytes=moved_bytes, Skipped=skipped)
    return summary


def _remove_stale_partials(ctx: ActionContext, archive_dir: str) -> None:
    """Remove the hidden partial copies (``.NAME.partial-<hex>``) a run killed mid-copy left
    in the archive folder: its source was never dropped, so nothing of them is lost, and
    each such death would otherwise leave one more, hidden, for good."""
    now = time.time()
    try:
        entries = [e for e in os.scandir(archive_dir) if _PARTIAL.match(e.name)]
    except OSError:
        return  # the copies themselves will say what is wrong with the folder
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < _STALE_PARTIAL:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live run holds it: not ours
            os.unlink(entry.path)
        except OSError:
            continue
        finally:
            os.close(fd)
        ctx.verbose(f"removed {entry.path}: a partial copy left by a run that died mid-copy")


ROOTS_ENV = "FLEETJOBS_ARCHIVE_ROOTS"  # set by the worker's --archive-root (os.pathsep list)


def _within_roots(path: str, archive_path: str) -> tuple[str, str]:
    """The two folders, refused if outside those the host's operator allows
    ``archive_logs`` (the worker's ``--archive-root``; none given: anywhere the worker's user
    may write, the folders as given). With roots, the folders resolved: what was checked is
    what is then read and written.

    Raises:
        ActionError: a folder (symlinks resolved) is under none of them.
    """
    roots = [os.path.realpath(r) for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
    if not roots:
        return path, archive_path
    resolved = []
    for folder in (path, archive_path):
        real = os.path.realpath(folder)
        if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            raise ActionError(
                f"{folder} is outside the folders this host's operator allows archive_logs "
                f"(the worker's --archive-root: {', '.join(roots)})"
            )
        resolved.append(real)
    return resolved[0], resolved[1]


def _validate(path: str, archive_path: str, days: float, pattern: str) -> None:
    """Refuse arguments that would make the run meaningless or dangerous.

    Args:
        path: The log folder argument.
        archive_path: The archive folder argument.
        days: The age argument.
        pattern: The name pattern argument.

    Raises:
        ValueError: On an empty or non-string folder or pattern, a folder that is not an
            absolute path, a negative or non-numeric ``days``, or an archive folder that is
            the log folder.
    """
    for label, value in (("path", path), ("archive_path", archive_path), ("pattern", pattern)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{label} must be a non-empty string, got {value!r}")
    for label, value in (("path", path), ("archive_path", archive_path)):
        if not os.path.isabs(value):  # it would be the worker's own folder's, wherever it ran
            raise ValueError(f"{label} must be an absolute path, got {value!r}")
    # bool is an int, but days=True is surely a mistake; NaN fails the >= test on purpose.
    if isinstance(days, bool) or not isinstance(days, int | float) or not days >= 0:
        raise ValueError(f"days must be a number >= 0, got {days!r}")
    if os.path.realpath(path) == os.path.realpath(archive_path):
        raise ValueError(
            f"archive_path {archive_path!r} is the log folder {path!r} itself; "
            "pick a different folder (a subfolder of it is fine, the scan is not recursive)"
        )


def _is_candidate(entry: os.DirEntry[str], pattern: str) -> bool:
    """Tell whether a listed entry is a regular file (not a symlink) matching the pattern."""
    try:
        return fnmatch.fnmatch(entry.name, pattern) and entry.is_file(follow_symlinks=False)
    except OSError:
        # Gone or unreadable already: leave it to the per-file stat to report precisely.
        return fnmatch.fnmatch(entry.name, pattern)


def _move(src: str, st: os.stat_result, archive_dir: str, name: str) -> str:
    """Move one file into the archive under a free name, without ever losing it.

    Args:
        src: The source file.
        st: Its ``lstat`` result from the age check.
        archive_dir: The existing archive folder.
        name: The file's base name.

    Returns:
        The path the file now has in the archive.

    Raises:
        OSError: If the move failed; the source is then still in place.
        _CopyMismatch: If a cross-file-system copy did not match the source.
    """
    if os.stat(archive_dir).st_dev == st.st_dev:
        try:
            return _move_within_fs(src, archive_dir, name)
        except _CrossDevice:
            pass  # same file system seen through two mounts: only a copy can cross
    return _copy_across_fs(src, st, archive_dir, name)


def _move_within_fs(src: str, archive_dir: str, name: str) -> str:
    """Rename-like move that never overwrites an archived file.

    Raises:
        _CrossDevice: If the kernel refuses the link or rename across mounts.
        OSError: On any other failure, with the source in place.
    """
    with _signals_deferred():
        try:
            dest, linked = _publish(src, archive_dir, name)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise _CrossDevice from exc
            raise
        if linked:
            _drop_source(src, dest)
    return dest


def _copy_across_fs(src: str, st: os.stat_result, archive_dir: str, name: str) -> str:
    """Copy to a hidden partial file, make it durable and checked, publish it, drop the source.

    Raises:
        OSError: If reading, writing or publishing failed; the partial copy is removed.
        _CopyMismatch: If the copy's size differs from the source or the source changed.
    """
    partial = os.path.join(archive_dir, f".{name[:200]}.partial-{secrets.token_hex(6)}")
    made_partial = False
    held: int | None = None
    try:
        # Exclusive create: the cleanup below may only ever delete files this call made; and
        # readable by its owner alone while it fills (a 0600 log is not 0644 for a moment)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        made_partial = True
        # held until the copy is published (or this process dies): another run's clean-up
        # leaves alone what a live run is making
        held = os.open(partial, os.O_RDONLY)
        with contextlib.suppress(OSError):  # no locks there (ENOLCK): nor does a clean-up
            fcntl.flock(held, fcntl.LOCK_EX)
        with open(fd, "wb") as fdst, open(src, "rb") as fsrc:
            while chunk := fsrc.read(_COPY_CHUNK):
                fdst.write(chunk)
            fdst.flush()
            now = os.fstat(fsrc.fileno())
            if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise _CopyMismatch("the file changed while it was being copied")
            # the owner and group as the source had them (a move keeps them), where this
            # process may give them (as root); then the mode, which a chown may clear bits of
            with contextlib.suppress(PermissionError):
                os.fchown(fdst.fileno(), now.st_uid, now.st_gid)
            os.fchmod(fdst.fileno(), stat.S_IMODE(now.st_mode))
            os.utime(fdst.fileno(), ns=(now.st_atime_ns, now.st_mtime_ns))
            os.fsync(fdst.fileno())
            copied = os.fstat(fdst.fileno()).st_size
        if copied != now.st_size:
            raise _CopyMismatch(f"copied {copied} bytes but the source has {now.st_size}")
    except BaseException:
        if made_partial:
            _remove_quietly(partial)
        if held is not None:
            os.close(held)
        raise
    published: str | None = None
    try:
        with _signals_deferred():
            try:
                published, linked = _publish(partial, archive_dir, name)
                if linked:
                    os.unlink(partial)
                # The final name must be durable before the only other copy is unlinked.
                _fsync_dir(archive_dir)
            except BaseException:
                # The source is untouched so far; take back what this call put in the archive.
                _remove_quietly(partial)
                if published is not None:
                    _remove_quietly(published)
                raise
            _drop_source(src, published)
    finally:
        os.close(held)
    return published


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold signals back while a move commits, so no handler can raise in the middle of it.

    The job runtime stops an action by raising from the handler of a signal sent to the
    action's thread. Raised between the link and the unlink of a move, that would leave the file
    twice; blocked, the signal is delivered, and its exception raised, just after the commit.
    (A process-wide signal may still land on another thread and interrupt; the worst case is
    then a file left in both places, never none.)
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield  # no per-thread masks here (Windows): nothing raises from signals mid-move
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _publish(src: str, archive_dir: str, name: str) -> tuple[str, bool]:
    """Give ``src`` the first free archive name for ``name``, never replacing an existing file.

    A hard link fails atomically when the name exists, so a race with another archiver cannot
    clobber anything. Where hard links are refused, the name is reserved with an exclusive
    create and ``src`` is renamed over that empty placeholder, which only this call owns.

    Args:
        src: The file to publish (same file system as the archive folder).
        archive_dir: The archive folder.
        name: The wanted base name.

    Returns:
        The final path, and True if it is a hard link (the caller must unlink ``src``) or
        False if ``src`` was renamed (already gone).

    Raises:
        OSError: If no free name could be taken or the link or rename failed.
    """
    use_links = True
    for candidate in _candidate_names(name):
        dest = os.path.join(archive_dir, candidate)
        if use_links:
            try:
                os.link(src, dest, follow_symlinks=False)
                return dest, True
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_HARDLINK_ERRNOS:
                    raise
                use_links = False
        try:
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        try:
            os.replace(src, dest)
        except BaseException:
            _remove_quietly(dest)
            raise
        return dest, False
    raise FileExistsError(errno.EEXIST, f"no free archive name for {name!r}", archive_dir)


def _drop_source(src: str, dest: str) -> None:
    """Unlink the source once the archive holds the file; undo the archive side on failure.

    Raises:
        OSError: If the source could not be removed; the archived name is removed again so
            the file is left exactly once, in its original place.
    """
    try:
        os.unlink(src)
    except FileNotFoundError:
        pass  # someone else removed it meanwhile: the archived name is now the only copy
    except BaseException:
        _remove_quietly(dest)
        raise


def _candidate_names(name: str) -> Iterator[str]:
    """Yield ``app.log``, ``app.1.log``, ``app.2.log``... up to a sanity limit."""
    yield name
    stem, ext = os.path.splitext(name)
    for n in range(1, _MAX_SUFFIX):
        yield f"{stem}.{n}{ext}"


def _first_free_name(archive_dir: str, name: str, taken: set[str]) -> str:
    """Predict the archive path a dry run would use (no reservation is made)."""
    for candidate in _candidate_names(name):
        if candidate not in taken and not os.path.lexists(os.path.join(archive_dir, candidate)):
            return os.path.join(archive_dir, candidate)
    return os.path.join(archive_dir, name)


def _fsync_dir(directory: str) -> None:
    """Flush a folder's entries to disk where the platform and file system allow it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open folders; rename durability is then the OS's job
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _remove_quietly(target: str) -> None:
    """Best-effort cleanup of a file this run created; a failure must not mask the first one."""
    with contextlib.suppress(OSError):
        os.unlink(target)


def _reason(exc: BaseException) -> str:
    """One readable reason out of an OSError or a copy check."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.strerror} ({exc.filename})"
    return str(exc) or type(exc).__name__
