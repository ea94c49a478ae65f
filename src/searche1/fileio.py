"""Atomic file output and input errors that name the file and line.

Every file searche1 writes goes through `atomic_write`: the content lands in a temporary file in the same directory
and is renamed over the target only when complete, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class InputError(ValueError):
    """Bad user input; the message names the file (and line, when there is one) and what is wrong."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | str | None = None):
        """`line`: a line number (file:line), or a place such as "row 3" (file: row 3)."""
        if line is None:
            where = f"{path}"
        elif isinstance(line, int):
            where = f"{path}:{line}"
        else:
            where = f"{path}: {line}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike, encoding: str = "utf-8") -> Iterator[list[IO[str]]]:
    """atomic_write for files that belong together (a report and its trajectories): each is written and synced
    to a temporary sibling, and only then are they renamed; if a rename fails the ones done are taken back and
    the earlier files put back, so a reader finds all of the new files or none."""
    paths_ = [Path(p) for p in paths]
    tmps: list[str] = []
    handles: list[IO[str]] = []
    try:
        for path in paths_:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            tmps.append(tmp)
            handles.append(os.fdopen(fd, "w", encoding=encoding))
            os.chmod(tmp, 0o666 & ~_umask())
        yield handles
        for f in handles:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        _replace_together(tmps, paths_)
    except BaseException:
        for f in handles:
            f.close()
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _replace_together(tmps: list[str], paths: list[Path]) -> None:
    olds = [p.with_name(f".{p.name}.old") for p in paths]
    moved, renamed = set(), []  # which earlier files were set aside; which new files went in
    try:
        for i, (tmp, path) in enumerate(zip(tmps, paths)):
            if path.exists():
                os.replace(path, olds[i])
                moved.add(i)
            os.replace(tmp, path)
            renamed.append(i)
    except BaseException:
        for i in reversed(range(len(paths))):
            if i in moved:
                os.replace(olds[i], paths[i])
            elif i in renamed:
                paths[i].unlink()
        raise
    for i in moved:
        with contextlib.suppress(FileNotFoundError):
            olds[i].unlink()


def check_writable(path: str | os.PathLike, what: str = "output") -> None:
    """Raise InputError unless a file can be written at `path`: for commands that work a while before they write,
    so that a read-only or mistyped --out fails at second 0. Creates nothing (a temporary file comes and goes)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, f"is a directory; name the {what} file")
    parent = path.parent
    while not parent.exists():  # the folders atomic_write would make
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(parent, f"is not a directory, so the {what} {path} cannot be written below it")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise InputError(path, f"the {what} cannot be written in {parent} ({e.strerror})") from None


def check_replaceable(path: str | os.PathLike, marker: str | None, what: str) -> None:
    """Raise unless `path` is absent, empty, or an earlier output of the same kind (it holds `marker`).
    Called by atomic_dir, and up front by commands that work a while before they write."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise InputError(path, f"exists and is not a directory; choose another path for the {what}")
        if any(path.iterdir()) and (marker is None or not (path / marker).exists()):
            raise InputError(path, f"exists and is not a searche1 {what} (no {marker}); choose another path "
                                   "or remove it first")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str | None = None, what: str = "output") -> Iterator[Path]:
    """Yield a temporary sibling directory; it replaces `path` only if the block succeeds.

    An existing `path` is replaced only when it is empty or holds `marker` (the file that shows it is an earlier
    output of the same kind, e.g. meta.json of an index), so a mistyped --out never deletes a user's directory.
    """
    path = Path(path)
    check_replaceable(path, marker, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, stat.S_IRWXU | (0o777 & ~_umask()))  # mkdtemp makes 0700
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous output back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write one JSON document (indented, for people reading it), atomically; the parent folder is created."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    return Path(path)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write dicts as UTF-8 JSON lines (non-ASCII kept as is), atomically. Returns the number of rows."""
    with atomic_write(path) as f:
        return write_jsonl_lines(f, rows)


def write_jsonl_lines(f: IO[str], rows: Iterable[dict]) -> int:
    """Write dicts as JSON lines (non-ASCII kept as is) to an open text file. Returns the number of rows."""
    n = 0
    for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; bad UTF-8 or JSON raises InputError with the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            obj = parse_jsonl_line(raw, path, lineno)
            if obj is not None:
                yield lineno, obj


MAX_JSON_DEPTH = 100
"""Nesting accepted in an input line; Python's json recurses once per level and stops near 1000."""


def json_depth(obj: Any) -> int:
    """How deeply lists and dicts nest in `obj` (a scalar: 0), without recursion."""
    if not isinstance(obj, (dict, list)):
        return 0
    depth, stack = 0, [(obj, 1)]
    while stack:
        x, d = stack.pop()
        depth = max(depth, d)
        stack += [(v, d + 1) for v in (x.values() if isinstance(x, dict) else x) if isinstance(v, (dict, list))]
    return depth


def parse_jsonl_line(raw: bytes, path: str | os.PathLike, lineno: int | str) -> dict | None:
    """One jsonl line -> its object, or None for a blank line; bad UTF-8 or JSON, or anything but an object, raises
    InputError naming the file and `lineno` (a line number, or a place such as "docid 7")."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})", lineno) from None
    if not text.strip():
        return None
    try:
        obj, too_deep = json.loads(text), False
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg} at column {e.colno})", lineno) from None
    except RecursionError:
        obj, too_deep = None, True
    if too_deep or (text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(obj) > MAX_JSON_DEPTH):
        # what parses here may still overflow the stack later (json.dumps of its metadata, a deeper caller)
        raise InputError(path, f"JSON nested more than {MAX_JSON_DEPTH} levels deep", lineno)
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
    if "\\ud" in text.lower():  # a \\udXXX escape may decode to a lone surrogate, which no file can hold
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(path, "holds a lone UTF-16 surrogate escape (e.g. \\ud800)", lineno) from None
    return obj
