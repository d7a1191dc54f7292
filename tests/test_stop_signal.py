"""One Ctrl-C stops `qvq-ray serve`'s wait, every time (issue 23 item 4).

The wait's signal handler once set a `threading.Event` that the main thread was waiting on; when the
signal landed while that thread held the Event's lock inside `Event.wait()`, the handler blocked on
the same lock forever and every later Ctrl-C did the same. A short poll makes that window most of
the loop's time, so the old handler hangs here in most of the 20 rounds; the real one never may.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

ROUNDS = 20

WAITER = textwrap.dedent(
    f"""
    import sys
    from qvq_ray.serve.app import _wait_for_stop_signal

    for round_ in range({ROUNDS}):
        print("waiting", round_, flush=True)
        _wait_for_stop_signal(poll_s=0.0)
        print("stopped", round_, flush=True)
    """
)


def test_one_signal_ends_the_wait_twenty_times_in_a_row():
    proc = subprocess.Popen([sys.executable, "-c", WAITER], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        for round_ in range(ROUNDS):
            assert proc.stdout.readline().split() == ["waiting", str(round_)]
            _wait_until_handlers_installed(proc.pid)
            proc.send_signal(signal.SIGTERM if round_ % 2 else signal.SIGINT)
            stopped = _readline_within(proc, 10.0)
            assert stopped.split() == ["stopped", str(round_)], f"round {round_}: one signal did not end the wait"
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_until_handlers_installed(pid: int) -> None:
    """Until the process catches SIGTERM (its default is to die): the wait's handlers are in."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = open(f"/proc/{pid}/status").read()
        caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise AssertionError("the wait never installed its signal handlers")


def _readline_within(proc: subprocess.Popen, timeout_s: float) -> str:
    import threading

    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return line[0] if line else ""
