"""A process pool for verification calls that may hang, with a hard per-call timeout.

Why not `concurrent.futures.ProcessPoolExecutor` or math-verify's own timeouts:

- math-verify times out with `signal.alarm`, which raises outside the main thread (Ray Serve
  replicas, Ray Data actor UDFs). In our worker processes it runs in the main thread with its own
  timeouts off, and this pool is the timeout.
- sympy on hostile input can hang in C-level big-integer work that no signal interrupts. The only
  sure stop is killing the process; an executor cannot kill one task's process and carry on, this
  pool kills that worker, starts a replacement and raises `VerifyTimeout`.

Workers are fresh interpreters (`subprocess` + a socket pair carrying `multiprocessing`
Connection messages), started lazily on first use, importing nothing heavy until a call needs
it. Fresh, because forking a threaded Ray worker can deadlock the child. Not
`multiprocessing.get_context("spawn")`, because spawn re-runs the parent's `__main__` module in
every child: in a Ray worker that is `default_worker.py` (Ray imported again in every verify
worker), and a script fed on stdin (`python - <<EOF`) makes every child crash at boot.

Callers name the function to run by its dotted name, and only names in `ALLOWED_FUNCTIONS` run:
no pickled callables, so nothing a caller passes can make a worker execute code; untrusted text
only ever travels as `str` values (plain arguments, or the fields of the gold-free problem record a
user check is given). User checks (`verifier.checks`) are no exception: the pool is created with
their import paths (`user_checks=`, from the config), each worker imports them at boot, and
`user_checks.run_user_check` runs only those.

The timeout covers the function's run only: a worker acknowledges a request once the function's
(trusted) module is imported, so a cold worker's import time never turns into a spurious timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection
from typing import Any, Callable, TypeVar, cast

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Dotted names a worker may run, each with the (trusted) modules it needs imported first. Add a
# verification function here to make it callable; the worker checks this table too. The imports
# happen before the call's timeout starts, so a cold worker's math-verify/sympy import (seconds on
# a loaded machine) never turns into a spurious timeout.
ALLOWED_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "qvq_ray.verify.worker.run_checks": ("qvq_ray.verify.worker",),
    "qvq_ray.verify.equivalence.answers_equivalent": ("qvq_ray.verify.worker",),
    # User checks (`verifier.checks`): runs only the import paths the pool was created with.
    "qvq_ray.verify.user_checks.run_user_check": ("qvq_ray.verify.user_checks",),
    # Test only: allocates `mb` megabytes (the memory limit turns it into a MemoryError).
    "qvq_ray.verify.pool._allocate_for_test": (),
    # Test only: a call that hangs, one that raises, a worker that dies mid-call.
    "qvq_ray.verify.pool._sleep_for_test": (),
    "qvq_ray.verify.pool._raise_for_test": (),
    "qvq_ray.verify.pool._exit_for_test": (),
}

# Time a worker may take to boot and import the called function's module before it starts the
# call. Generous: imports are trusted code, and a loaded 2-core machine can be slow to spawn.
STARTUP_TIMEOUT_S = 120.0
_IDLE_WAIT_S = 0.25  # how often a caller waiting for a free worker rechecks that the pool is open


class VerifyTimeout(TimeoutError):
    """A verification call ran past its timeout; its worker process was killed and replaced."""


class VerifyWorkerError(RuntimeError):
    """A verification call failed in the worker (an exception, or the worker process died)."""


# ---------------------------------------------------------------- child side

# What a worker interpreter runs: take the parent's import path (as multiprocessing's spawn does),
# cap its address space, then serve requests on the inherited socket.
# argv: socket fd, parent pid, sys.path as JSON, memory limit in MiB (0: none), the user checks'
# import paths as JSON (the only ones `user_checks.run_user_check` will run in this worker).
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[3]); "
    "from qvq_ray.verify.pool import _child_main; "
    "_child_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4]), json.loads(sys.argv[5]))"
)


def _child_main(fd: int, parent_pid: int, memory_limit_mb: int = 0, user_checks: list[str] | None = None) -> None:
    """Entry point of a worker interpreter (see `_BOOT`)."""
    _limit_memory(memory_limit_mb)
    if user_checks:
        from qvq_ray.verify import user_checks as checks

        checks.allow(user_checks)  # imported now, before any call's timeout starts
    _worker_main(Connection(fd), parent_pid)


def _limit_memory(memory_limit_mb: int) -> None:
    """RLIMIT_AS for this process (before sympy is imported); best effort where unsupported."""
    if memory_limit_mb <= 0:
        return
    try:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard if hard != resource.RLIM_INFINITY else limit))
    except (ImportError, ValueError, OSError) as exc:  # e.g. macOS does not enforce RLIMIT_AS
        logger.warning("verify worker memory limit not applied: %s", exc)


def _worker_main(conn: Any, parent_pid: int) -> None:
    """Worker process entry: receive (name, args), run the allowlisted function, reply.

    Replies: ("start", None) once the function is resolved, then ("ok", result) or
    ("err", message). A `None` request or a closed pipe ends the worker.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _watch_parent(parent_pid)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        name, args = request
        try:
            fn = _resolve(name)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            conn.send(("err", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("start", None))
        try:
            reply = ("ok", fn(*args))
        except MemoryError:
            reply = ("err", "MemoryError: the worker's memory limit was reached")
        except BaseException as exc:  # noqa: BLE001 - reported to the caller (a stray soft timeout too)
            reply = ("err", f"{type(exc).__name__}: {str(exc)[:500]}")
        try:
            conn.send(reply)
        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
            conn.send(("err", f"result not sendable: {type(exc).__name__}: {exc}"))


def _resolve(name: str) -> Callable[..., Any]:
    if name not in ALLOWED_FUNCTIONS:
        raise PermissionError(f"{name!r} is not an allowed verification function")
    for module in ALLOWED_FUNCTIONS[name]:
        importlib.import_module(module)
    module_name, _, attr = name.rpartition(".")
    function: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    return function


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent dies (killed parents run no cleanup; orphans must not linger)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="qvq-verify-parent-watch", daemon=True).start()


def _sleep_for_test(seconds: float) -> float:
    """Test only: a call that outlives its timeout."""
    time.sleep(seconds)
    return seconds


def _raise_for_test(message: str) -> None:
    """Test only: a call that raises in the worker."""
    raise ValueError(message)


def _exit_for_test(code: int) -> None:
    """Test only: the worker process dies mid-call."""
    os._exit(code)


def _allocate_for_test(mb: int) -> int:
    """Test only: allocate `mb` MiB and return its length (a MemoryError under the memory limit)."""
    block = bytearray(mb * 1024 * 1024)
    return len(block)


# ---------------------------------------------------------------- parent side


class _Worker:
    """One worker: a fresh interpreter (`python -c _BOOT`) and our end of its socket pair."""

    __slots__ = ("process", "conn")

    def __init__(self, memory_limit_mb: int = 0, user_checks: tuple[str, ...] = ()) -> None:
        ours, theirs = socket.socketpair()
        child_fd = theirs.detach()
        try:
            self.process = subprocess.Popen(
                [
                    _executable(),
                    "-c",
                    _BOOT,
                    str(child_fd),
                    str(os.getpid()),
                    json.dumps(sys.path),
                    str(int(memory_limit_mb or 0)),
                    json.dumps(list(user_checks)),
                ],
                pass_fds=(child_fd,),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            os.close(child_fd)  # the child holds its own copy; ours would hide the child's EOF
        self.conn = Connection(ours.detach())

    def kill(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort on shutdown paths
            pass
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()


def _executable() -> str:
    from multiprocessing import spawn

    return spawn.get_executable() or sys.executable


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.kill()
    workers.clear()


class VerifyPool:
    """`workers` spawned processes running allowlisted functions with a hard timeout per call.

    Each worker's address space is capped at `memory_limit_mb` (RLIMIT_AS; 0 = no cap): a call
    that allocates past it gets a MemoryError (or, in C code that cannot raise, the worker dies and
    is replaced), never the machine's memory.

    `call` is synchronous and thread-safe; `acall` awaits it on a small thread pool of the pool's
    own (not the event loop's default executor, which other code shares). Usable as a context
    manager; processes are also killed at interpreter exit and when the pool is garbage-collected.
    """

    def __init__(
        self, workers: int = 2, timeout_s: float = 5.0, memory_limit_mb: int = 1024, user_checks: tuple[str, ...] = ()
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if memory_limit_mb < 0:
            raise ValueError("memory_limit_mb must be >= 0")
        self.workers = workers
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        # import paths of the user checks (`verifier.checks`) its workers import at boot and may run
        self.user_checks = tuple(user_checks)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Runs at close(), garbage collection or interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _kill_all, self._all)

    # -- lifecycle

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("VerifyPool is closed")
            if not self._started:
                for _ in range(self.workers):
                    self._add_worker()
                self._started = True

    def _add_worker(self) -> None:
        worker = _Worker(self.memory_limit_mb, self.user_checks)
        self._all.add(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill `worker` and, unless the pool is closing, start a fresh one in its place."""
        logger.debug("replacing verify worker pid %s", worker.process.pid)
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if not self._closed:
                self._add_worker()

    def close(self) -> None:
        """Kill every worker; calls in flight raise `VerifyWorkerError`, later calls `RuntimeError`."""
        with self._lock:
            self._closed = True
        self._finalizer()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "VerifyPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls

    def call(self, fn_qualified_name: str, *args: Any, timeout_s: float | None = None) -> Any:
        """Run an allowlisted function in a worker and return its result.

        Raises `VerifyTimeout` past `timeout_s` (default: the pool's), `VerifyWorkerError` when
        the function raised or the worker died, `PermissionError` for a name not allowlisted.
        """
        if fn_qualified_name not in ALLOWED_FUNCTIONS:
            raise PermissionError(f"{fn_qualified_name!r} is not an allowed verification function")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        self._ensure_started()
        worker = self._take_idle()
        try:
            worker.conn.send((fn_qualified_name, args))
        except (OSError, EOFError, ValueError):
            # The worker died while idle (OOM killer, ...): nothing ran, so retry once on a fresh one.
            self._replace(worker)
            worker = self._take_idle()
            try:
                worker.conn.send((fn_qualified_name, args))
            except (OSError, EOFError, ValueError) as exc:
                self._replace(worker)
                raise VerifyWorkerError(f"verify worker unavailable: {exc}") from exc
        return self._await_reply(worker, fn_qualified_name, timeout)

    async def run_blocking(self, func: Callable[[], T]) -> T:
        """Run a blocking caller of this pool on the pool's own threads (not the loop's default executor)."""
        return await asyncio.get_running_loop().run_in_executor(self._get_executor(), func)

    def _get_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    # One thread per worker: more would only wait for a free worker.
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.workers, thread_name_prefix="qvq-verify"
                    )
        return self._executor

    def _take_idle(self) -> _Worker:
        while True:
            if self._closed:
                raise RuntimeError("VerifyPool is closed")
            try:
                return self._idle.get(timeout=_IDLE_WAIT_S)
            except queue.Empty:
                continue

    def _await_reply(self, worker: _Worker, name: str, timeout: float) -> Any:
        # Phase 1: the worker boots (if cold) and imports the function's module: trusted, generous.
        status, payload = self._receive(worker, name, STARTUP_TIMEOUT_S, "start")
        if status == "start":
            # Phase 2: the call itself, under the hard timeout.
            status, payload = self._receive(worker, name, timeout, "finish")
        self._idle.put(worker)
        if status == "ok":
            return payload
        raise VerifyWorkerError(payload)

    def _receive(self, worker: _Worker, name: str, timeout: float, phase: str) -> tuple[str, Any]:
        """The worker's next message; on timeout or death the worker is replaced and this raises."""
        try:
            ready = worker.conn.poll(timeout)
            message = worker.conn.recv() if ready else None
        except (EOFError, OSError) as exc:
            self._replace(worker)
            raise VerifyWorkerError(f"verify worker died during {name} (exit code {worker.exitcode})") from exc
        if message is None:
            self._replace(worker)
            raise VerifyTimeout(f"{name} did not {phase} within {timeout:g}s; its worker was killed")
        return cast("tuple[str, Any]", message)
