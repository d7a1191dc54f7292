"""Reading the image files a problem set names, confined to the problem set's own folders.

Problem sets are downloaded from strangers, and a problem file names its image files itself: it
could name `/etc/passwd`, `../../../.ssh/id_rsa`, `/proc/self/environ`, a symlink that leaves the
dataset, `/dev/zero` (endless) or a FIFO (opening one for reading blocks). So before anything is
opened, a path is resolved (symlinks and `..` followed, no file opened) and must lie inside one of
the allowed folders (`ImageRoots`: the dataset's folder, a user's `--images DIR`), and `stat` must
say it is a regular file. It is then opened with O_NOFOLLOW | O_NONBLOCK and checked again on the
open descriptor, so a path swapped for a link or a FIFO in between never blocks or escapes.
A refusal names the path, never anything read from a file.

`ImageRoots.anywhere()` is the user's explicit `--allow-paths-outside`: any regular file is read.
Device files, FIFOs and folders stay refused even then.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from qvq_ray.image_ref import ImageError

#: What the user can do about a path outside the folders, said in every such refusal.
ALLOW_HINT = "pass --allow-paths-outside to read files outside it"


@dataclass(frozen=True)
class ImageRoots:
    """The folders a problem set's image files may be read from (resolved), or anywhere."""

    folders: tuple[str, ...] = ()
    anywhere_allowed: bool = False

    @classmethod
    def of(cls, folders: Iterable[str | Path]) -> "ImageRoots":
        """Roots from folders as given; each is resolved (a symlinked dataset folder is its target)."""
        resolved = dict.fromkeys(os.path.realpath(os.fspath(f)) for f in folders)
        return cls(tuple(resolved))

    @classmethod
    def anywhere(cls) -> "ImageRoots":
        return cls((), True)

    def resolve(self, path: str | Path) -> str:
        """`path` with symlinks and `..` resolved, when that lies inside a root; else ImageError.

        Opens nothing: `os.path.realpath` only reads links."""
        real = os.path.realpath(os.fspath(path))
        if self.anywhere_allowed or any(_inside(real, root) for root in self.folders):
            return real
        raise ImageError(
            f"image path {os.fspath(path)} is outside {self.describe()}: absolute paths, '..' and symlinks leaving "
            f"it are refused; {ALLOW_HINT}"
        )

    def contains(self, path: str | Path) -> bool:
        """True when `path` (resolved) may be read."""
        try:
            self.resolve(path)
        except ImageError:
            return False
        return True

    def describe(self) -> str:
        if len(self.folders) == 1:
            return f"the dataset folder {self.folders[0]}"
        return f"the dataset folders {', '.join(self.folders)}" if self.folders else "the dataset folder (none given)"


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def read_image_file(path: str | Path, roots: ImageRoots, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`, read only when it lies inside `roots`; at most
    `max_bytes` (a bigger file is refused). Every refusal is an ImageError naming the path."""
    shown = os.fspath(path)
    real = roots.resolve(path)
    try:
        before = os.stat(real)
    except FileNotFoundError:
        raise ImageError(f"image file not found: {shown}") from None
    except OSError as e:
        raise ImageError(f"cannot read image file {shown}: {e.strerror or e}") from None
    _check_regular(before, shown, max_bytes)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ImageError(f"cannot read image file {shown}: {e.strerror or e}") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise ImageError(f"image file {shown} changed while it was being opened")
        _check_regular(now, shown, max_bytes)
        return _read_at_most(fd, shown, max_bytes)
    finally:
        os.close(fd)


def _check_regular(info: os.stat_result, shown: str, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):  # a folder, a device (/dev/zero), a FIFO, a socket
        raise ImageError(f"image path is not a file: {shown}")
    if info.st_size > max_bytes:
        raise ImageError(f"image file {shown} is {info.st_size} bytes, over max_bytes {max_bytes}")


def _read_at_most(fd: int, shown: str, max_bytes: int) -> bytes:
    """Up to max_bytes + 1 bytes (a file that grew past the limit is refused, never read whole)."""
    chunks, size = [], 0
    try:
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ImageError(f"cannot read image file {shown}: {e.strerror or e}") from None
    if size > max_bytes:
        raise ImageError(f"image file {shown} is over max_bytes {max_bytes}")
    return b"".join(chunks)
