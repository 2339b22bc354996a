"""Writing files without losing anything: refuse to overwrite, write atomically."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from tla_edge.errors import UserError


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def printable(text: str | os.PathLike) -> str:
    """Text fit for a UTF-8 file or a strict console: bytes of a file name that are not UTF-8 as ``\\xNN``.

    Python holds such bytes as lone surrogates (``os.fsdecode(b"caf\\xe9")``), which
    a strict UTF-8 writer refuses; valid text is returned unchanged.
    """
    text = os.fspath(text) if isinstance(text, os.PathLike) else text
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Checks that ``path`` may be written.

    Args:
      path: the output file or directory.
      force: whether an existing output may be replaced.

    Returns:
      ``path`` as a Path.

    Raises:
      UserError: the output exists and ``force`` is false, or its parent
        directory cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not force:
        raise UserError(f"output '{path}' already exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output directory '{parent}': {err.strerror}") from err
    if not os.access(parent, os.W_OK):
        raise UserError(f"output directory '{parent}' is not writable")
    return path


def check_outside_package(path: str | os.PathLike, name: str, kind: str = "path") -> None:
    """Refuses an output ``kind`` (a path, a folder) inside the installed package (no command writes into it).

    Raises:
      UserError: ``--out 'x' is inside the installed package 'p'; expected a path outside it``.
    """
    package = Path(__file__).resolve().parent
    target = Path(path).resolve()
    if target == package or package in target.parents:
        raise UserError(f"{name} '{path}' is inside the installed package '{package}'; "
                        f"expected a {kind} outside it (no command writes into the package)")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two names reach one file: the same inode where both exist, else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]] | None = None,
    force: bool = False,
) -> None:
    """The one check of a command's output paths: none is an input or another output, each is writable.

    ``--force`` allows replacing an earlier output, never an input, and never
    lets two outputs of one run write the same file.

    Args:
      outputs: what each output is called (``"--out"``, ``"--out's sidecar"``) -> its path; None: not written.
      inputs: the same for the files and folders read (``"--model"``, ``"DATA"``); a mapping or
        ``(name, path)`` pairs (several ``--model``).
      force: whether existing outputs may be replaced (see :func:`check_writable`).

    Raises:
      UserError: ``--report 'm.tflite' is the input --model; expected a file that is not an input``, or
        ``--out and --report are both 'x.json'; expected different files``, or a :func:`check_writable` refusal.
    """
    check_distinct(outputs, inputs)
    for path in outputs.values():
        if path is not None:
            check_writable(path, force)


def check_distinct(
    outputs: Mapping[str, str | os.PathLike | None],
    inputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]] | None = None,
) -> None:
    """:func:`check_outputs` without the writability check (for a command that checks that itself)."""
    named_out = [(k, v) for k, v in outputs.items() if v is not None]
    pairs = (inputs or {}).items() if isinstance(inputs, Mapping) or inputs is None else inputs
    named_in = [(k, v) for k, v in pairs if v is not None]
    for i, (name, path) in enumerate(named_out):
        for in_name, in_path in named_in:
            if same_file(path, in_path):
                raise UserError(f"{name} '{path}' is the input {in_name}; expected a path that is not an "
                                "input (inputs are never changed, --force or not)")
        for other_name, other in named_out[:i]:
            if same_file(path, other):
                raise UserError(f"{other_name} and {name} are both '{path}'; expected different files")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it over ``path`` on success.

    The temporary file is removed if the body raises, so a crash never leaves
    a half-written output under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:  # from here on, an interrupt (a signal turned into an exception) still removes the file
        os.close(fd)
        # mkstemp makes the file private (0600); an output gets the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` through a temporary file and a rename.

    A file name that is not UTF-8 (Python holds its bytes as lone surrogates) is
    written back as its own bytes, so a report naming it is never lost at the end.
    """
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        data = text.encode("utf-8", "backslashreplace")
    return write_bytes_atomic(path, data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as indented JSON through a temporary file and a rename."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Holds SIGINT, SIGTERM and SIGHUP back while the body runs (e.g. a few renames); they land after it."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_files_atomic(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Writes several files all or nothing: every one staged under a temporary name, then all renamed.

    A failure while staging leaves nothing changed; the renames run with
    SIGINT, SIGTERM and SIGHUP held back, and a rename that fails undoes the
    renames before it where they created a new file.

    Returns:
      The paths written, in the order given.
    """
    staged: list[tuple[Path, Path]] = []
    done: list[Path] = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            staged.append((Path(tmp), path))
        existed = {path for _, path in staged if path.exists()}
        with signals_blocked():
            try:
                for tmp, path in staged:
                    os.replace(tmp, path)
                    done.append(path)
            except OSError:
                for path in done:
                    if path not in existed:
                        path.unlink(missing_ok=True)
                raise
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return [Path(p) for p in files]
