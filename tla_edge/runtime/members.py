"""How the members of a fused set run on one face: one after another, or at the same time.

Each member owns its interpreter, and LiteRT releases the GIL inside
``Interpreter.invoke()`` (its docstring says so; tests/runtime/test_members.py
checks that a Python thread runs while another is inside ``invoke``), so two
members invoked from two threads use two cores. :class:`MemberRunner` keeps a
small persistent pool (members - 1 worker threads; the calling thread runs the
first member itself), so a frame pays two queue hand-offs, not thread starts.

    runner = MemberRunner(2, concurrent=True)
    outs = runner.map(lambda m: m.invoke_input(), models)   # in the order of models
    runner.close()
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Sequence, TypeVar

from tla_edge import host

MEMBER_MODES = ("auto", "sequential", "concurrent")
"""What ``members=`` accepts (``Pipeline``, ``--members``)."""

T = TypeVar("T")
R = TypeVar("R")


def check_members(members: object, what: str = "members") -> str:
    """Returns ``members`` when it is one of :data:`MEMBER_MODES`.

    Raises:
      ValueError: ``members 'both' is not one of 'auto', 'sequential', 'concurrent'``.
    """
    if not isinstance(members, str) or members not in MEMBER_MODES:
        raise ValueError(f"{what} {members!r} is not one of {', '.join(repr(m) for m in MEMBER_MODES)}")
    return members


def resolve_members(members: str, count: int, num_threads: int | None = None, edgetpu: bool = False,
                    cpus: int | None = None) -> str:
    """``"sequential"`` or ``"concurrent"``: what ``members`` means for this set on this machine.

    ``"auto"`` is concurrent when there is something to overlap and a core to
    spare beyond it: more than one member, no Edge TPU (one device serves one
    model at a time), and more than ``count x num_threads`` CPUs available to
    this process (``num_threads`` None counts as 1): a Pi 4 or 5 (4 cores) at
    1 thread runs the pair concurrently, a 2-core machine one after another.
    Why the spare core: the frame path has more than the members (camera,
    decode, detector, the OS), and the members' threads then wait on each
    other. On the 2-core x86 VM of benchmarks/README.md, loaded by other
    work, the pair at 1 thread each was slower concurrently than one after
    another (latency section, ``--members``); with the cores idle it overlaps.
    One member is always sequential; an explicit choice is kept. Scores are
    the same either way.

    Args:
      members: one of :data:`MEMBER_MODES`.
      count: members in the set.
      num_threads: interpreter threads per member (None: the runtime's choice).
      edgetpu: the members run on a Coral Edge TPU.
      cpus: CPUs available (None: this process's, from :func:`tla_edge.host.cpus_available`).
    """
    check_members(members)
    if count < 2:
        return "sequential"
    if members != "auto":
        return members
    cpus = host.cpus_available() if cpus is None else cpus
    wanted = count * (num_threads or 1)
    return "concurrent" if not edgetpu and cpus is not None and cpus > wanted else "sequential"


def resolve_crop_overlap(overlap: bool | None, members: str, crops: int, num_threads: int | None = None,
                         edgetpu: bool = False, cpus: int | None = None) -> bool:
    """Whether a sequential fused set cuts its later members' crops while the first member runs.

    Only a set run one member after another with crops of its own (another
    scale, rule or size) has a crop to overlap: a worker thread cuts them and
    writes those members' inputs while the calling thread crops for and invokes
    the first member (OpenCV and LiteRT both release the GIL). ``None`` (auto)
    overlaps when a core would otherwise be idle during that invoke: on an Edge
    TPU (the invoke runs off the CPU) or with more CPUs than ``num_threads``
    (None counts as 1): the 2-core x86 VM and a Pi at 1 thread, not at 2 threads
    on 2 cores. Scores are the same either way, bit for bit.

    Args:
      overlap: True or False to choose; None for auto.
      members: ``"sequential"`` or ``"concurrent"`` (resolved by :func:`resolve_members`).
      crops: distinct crops the set needs per face.
      num_threads: interpreter threads per member.
      edgetpu: the members run on a Coral Edge TPU.
      cpus: CPUs available (None: this process's).

    Raises:
      ValueError: ``overlap`` is not None, True or False.
    """
    if overlap is not None and not isinstance(overlap, bool):
        raise ValueError(f"crop overlap {overlap!r} is not one of None (auto), True, False")
    if members != "sequential" or crops < 2:
        return False
    if overlap is not None:
        return overlap
    cpus = host.cpus_available() if cpus is None else cpus
    return edgetpu or (cpus is not None and cpus > (num_threads or 1))


def shared_work(models: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Per member of a set: the index of its crop, and the first member whose input it may copy (itself if none).

    Members of one crop scale, rule and input size share one crop (cut once a
    face); of those, members with equal :attr:`~tla_edge.runtime.interpreter.LivenessModel.input_key`
    (normalization, input dtype and quantization) share one input too: it is
    computed for the first and copied into the others' tensors (round 19's
    set: two 1.4x members, one crop, one standardisation).
    """
    crops: dict[tuple, int] = {}
    inputs: dict[tuple, int] = {}
    crop_of, input_of = [], []
    for j, m in enumerate(models):
        crop_of.append(crops.setdefault((m.meta.crop_scale, m.meta.crop_rule, m.input_size), len(crops)))
        input_of.append(inputs.setdefault((crop_of[j], m.input_key), j))
    return crop_of, input_of


class Job:
    """One call handed to a :class:`Worker`: :meth:`exception` waits for it to end."""

    __slots__ = ("_fn", "_args", "_started", "_done", "_result", "_error")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self._fn, self._args = fn, args
        self._started = threading.Lock()  # taken by whichever thread runs the call: once, by one
        self._done = threading.Lock()
        self._done.acquire()  # released when the call has ended
        self._result: Any = None
        self._error: BaseException | None = None

    def _claim(self) -> bool:
        """Takes the call for the asking thread; False when another thread took it first."""
        return self._started.acquire(blocking=False)

    def finish(self) -> BaseException | None:
        """Runs the call on this thread if the worker has not started it yet, else waits for it; its exception.

        On a loaded machine the worker may not be scheduled before the caller
        needs the result; then the caller does the work itself rather than
        wait for a core (the worker skips a call it finds taken).
        """
        if self._claim():
            self._run()
        return self.exception()

    def _run(self) -> None:
        try:
            self._result = self._fn(*self._args)
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits
            self._error = err
        finally:
            self._fn = self._args = None  # the frame is not kept alive by a finished job
            self._done.release()

    def exception(self) -> BaseException | None:
        """Waits for the call to end; its exception, or None."""
        with self._done:
            return self._error

    def result(self) -> Any:
        """Waits for the call to end; its return value, or raises its exception."""
        error = self.exception()
        if error is not None:
            raise error
        return self._result


class Worker:
    """One persistent thread running handed calls in order: a frame's hand-over is a queue put and a lock.

    A :class:`concurrent.futures.ThreadPoolExecutor` does the same with a
    Future and its condition variable per call; on the 2-core VM this hand-over
    took 22 against 31 microseconds a frame (benchmarks/README.md, round 8).
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job._claim():
                job._run()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        """Runs ``fn(*args)`` on the worker; the :class:`Job` waits for it.

        Raises:
          RuntimeError: the worker is closed.
        """
        if self._thread is None:
            raise RuntimeError("worker thread is closed")
        job = Job(fn, args)
        self._jobs.put(job)
        return job

    def close(self) -> None:
        """Stops the thread after the calls already handed to it. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()


class CropWorker(Worker):
    """One persistent worker thread that prepares later members' inputs (:func:`resolve_crop_overlap`)."""

    def __init__(self) -> None:
        super().__init__("tla-edge-crop")


class MemberRunner:
    """Runs one call per member: in the calling thread, or concurrently on a persistent pool.

    Args:
      count: members (the most calls one :meth:`map` makes).
      concurrent: run them at the same time (``count`` - 1 worker threads,
        started here); else one after another in the caller.
    """

    def __init__(self, count: int, concurrent: bool) -> None:
        self.count = count
        self.concurrent = bool(concurrent) and count > 1
        self._pool: list[Worker] | None = None
        if self.concurrent:  # start the workers now, not on the first frame
            self._pool = [Worker(f"tla-edge-member-{i}") for i in range(count - 1)]

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``, concurrently when asked; every call has ended on return.

        Raises:
          Exception: the first item's error (in order) after every call has
          ended, so no member is still running when the caller moves on.
        """
        if not self.concurrent or len(items) < 2:
            return [fn(item) for item in items]
        pool = self._pool
        if pool is None:
            raise RuntimeError("member runner is closed")
        if len(items) > len(pool) + 1:
            raise ValueError(f"{len(items)} items for a runner of {self.count} members")
        pending = [worker.submit(fn, item) for worker, item in zip(pool, items[1:])]
        first: Any = None
        error: BaseException | None = None
        try:
            first = fn(items[0])
        except BaseException as err:  # noqa: BLE001 - re-raised once the others have ended
            error = err
        errors = [job.finish() for job in pending]  # each waited for, or run here if no worker has started it
        if error is None:
            error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise error
        return [first, *(job.result() for job in pending)]

    def close(self) -> None:
        """Stops the worker threads (after any call in flight). Safe to call twice."""
        pool, self._pool = self._pool, None
        for worker in pool or ():
            worker.close()
