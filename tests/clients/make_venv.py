"""A virtualenv per real client (lm-eval, guidellm, aiperf): they pin conflicting dependencies, so
each lives apart from the project's venv and from each other.

    python tests/clients/make_venv.py lm-eval guidellm aiperf     # build (or reuse) them; print their paths

`tests/clients/<name>.txt` pins every package the client was tested with (a `pip freeze` of a
working venv). torch, where a client needs it (guidellm: its data loader), is pinned to
2.13.0+cpu, the CPU build on this machine's disk (constraints-cpu.txt): a bare `torch` pulls a
multi-GB CUDA build, and where that wheel is missing the install fails rather than fetch one.

The venvs live outside the repository, in `$QVQ_RAY_CLIENT_VENVS` (default
`~/.cache/qvq-ray/client-venvs`), one folder per client and hash of its pins, so a fresh clone
(CI) on the same machine reuses them and a change of pins builds a new one. A venv is
marked complete only when its install succeeded (an unfinished one is built again); a lock file
keeps two builds of one venv (two pytest runs) from racing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
CLIENTS = {"lm-eval": "lm_eval", "guidellm": "guidellm", "aiperf": "aiperf"}  # name -> its console script
BUILD_TIMEOUT_S = 1800


def venvs_root() -> Path:
    configured = os.environ.get("QVQ_RAY_CLIENT_VENVS")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "qvq-ray" / "client-venvs"


def pins(name: str) -> Path:
    return HERE / f"{name}.txt"


def venv_path(name: str) -> Path:
    digest = hashlib.sha256(pins(name).read_bytes() + sys.version.encode()).hexdigest()[:12]
    return venvs_root() / f"{name}-{digest}"


def executable(name: str) -> Path:
    return venv_path(name) / "bin" / CLIENTS[name]


def ensure(name: str, log=print) -> Path:
    """The client's venv (built if absent); its console script. Raises CalledProcessError (with pip's
    output) when the install fails."""
    if name not in CLIENTS:
        raise ValueError(f"unknown client {name!r}: one of {sorted(CLIENTS)}")
    target = venv_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return executable(name)
        shutil.rmtree(target, ignore_errors=True)  # a build that did not finish
        started = time.monotonic()
        log(f"building the {name} venv at {target} (pins: {pins(name).relative_to(REPO_ROOT)}) ...")
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run(
            [*pip, "-r", str(pins(name))], env={**os.environ, "PIP_NO_INPUT": "1"}, capture_output=True, text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, _pip_errors(done.stderr))
        (target / ".complete").write_text(f"{time.monotonic() - started:.0f} s\n")
        log(f"built the {name} venv in {time.monotonic() - started:.0f} s")
        return executable(name)


def _pip_errors(stderr: str) -> str:
    """pip's stderr without the local index's 'Location ... is ignored' noise."""
    return "\n".join(line for line in stderr.splitlines() if "is ignored: it is neither a file nor a directory" not in line)


def main(argv: list[str]) -> int:
    for name in argv or sorted(CLIENTS):
        print(ensure(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
