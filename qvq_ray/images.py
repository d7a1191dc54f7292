"""Image intake: resolve a reference to bytes, decode it safely, and size it the Qwen2-VL way.

Images arrive from problem files, benchmark folders and HTTP requests, so every one of them is
untrusted: byte, pixel and count limits apply before any pixel is decoded, URL fetching is off
unless allowed (and never reaches private addresses), and only common raster formats are opened
(PIL would otherwise hand EPS files to Ghostscript). Every failure is an `ImageError` with a
message a user can act on, so the batch job turns it into that row's error, not a crashed job.

`smart_resize` is Qwen2-VL's own sizing rule. Resizing once on a CPU worker (`prepare_image`)
keeps the engine's processor from doing the expensive part next to the accelerator; the result
is a fixed point of smart_resize, so the processor leaves it as it is.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from qvq_ray.config import QWEN2VL_FACTOR, ImageLimits  # noqa: F401  (ImageLimits re-exported)
from qvq_ray.image_ref import ImageError as ImageError, ImageRef as ImageRef  # re-exported

if TYPE_CHECKING:  # for annotations only (PIL and the config are imported where used)
    from collections.abc import Sequence

    from PIL.Image import Image as PILImage

    from qvq_ray.config import ModelConfig
    from qvq_ray.image_files import ImageRoots

MiB = 1024 * 1024

#: Formats PIL may open. Common raster formats only: PIL's EPS plugin runs Ghostscript, and rare
#: plugins are rarely hardened against hostile input.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")

#: Qwen2-VL refuses images whose long side is more than this many times the short side.
MAX_ASPECT_RATIO = 200

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*?),", re.IGNORECASE)
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
_MAGIC = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"RIFF",  # WebP
    b"BM",  # BMP
    b"II*\x00",  # TIFF little endian
    b"MM\x00*",  # TIFF big endian
)


_DEFAULT_LIMITS = ImageLimits()


# ---------------------------------------------------------------- resolving a reference to bytes


def load_image_bytes(
    ref: ImageRef | bytes | str,
    *,
    base_dir: Path | str | None = None,
    limits: ImageLimits | None = None,
    roots: "ImageRoots | None" = None,
) -> bytes:
    """Return the encoded bytes of an image given as bytes, base64, a data URL, a path or a URL.

    Relative paths resolve against `base_dir` (the problem file's folder), not the process's
    working directory, so a problem set loads the same from wherever a job starts. With `roots`
    (qvq_ray/image_files.py), a file is read only when it lies inside them: the batch job and the
    report pass the problem set's folders, since a downloaded problem file may name any path.
    """
    limits = limits or _DEFAULT_LIMITS
    if isinstance(ref, ImageRef):
        if ref.bytes is not None:
            return _check_size(ref.bytes, limits, what="image")
        if not ref.path:
            raise ImageError("image reference has neither bytes nor path")
        ref = ref.path
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return _check_size(bytes(ref), limits, what="image")
    if not isinstance(ref, str):
        raise ImageError(f"unsupported image reference of type {type(ref).__name__}")

    text = ref.strip()
    if not text:
        raise ImageError("empty image reference")
    lower = text[:16].lower()
    if lower.startswith("data:"):
        return decode_data_url(text, limits)
    if lower.startswith(("http://", "https://")):
        if not limits.allow_urls:
            raise ImageError(
                f"URL images are disabled (ImageLimits.allow_urls is False); send the image inline as a "
                f"base64 data URL instead of {_short(text)}"
            )
        return fetch_image_url(text, limits)
    if lower.startswith("file://"):
        return _read_file(text[len("file://") :], base_dir, limits, roots)
    if re.match(r"^[a-z][a-z0-9+.-]*://", lower):
        raise ImageError(f"unsupported image URL scheme in {_short(text)}")
    decoded = _maybe_base64(text, limits)
    if decoded is not None:
        return decoded
    return _read_file(text, base_dir, limits, roots)


def decode_data_url(url: str, limits: ImageLimits | None = None) -> bytes:
    """Bytes of a `data:image/...;base64,` URL (size checked before decoding the base64)."""
    limits = limits or _DEFAULT_LIMITS
    m = _DATA_URL.match(url)
    if not m:
        raise ImageError(f"malformed data URL {_short(url)}")
    mime = (m.group("mime") or "").lower()
    params = [p.strip().lower() for p in (m.group("params") or "").split(";") if p.strip()]
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise ImageError(f"data URL is not an image (media type {mime!r})")
    if "base64" not in params:
        raise ImageError("data URL images must be base64-encoded (';base64,')")
    return _b64decode(url[m.end() :], limits, what="data URL image")


def _maybe_base64(text: str, limits: ImageLimits) -> bytes | None:
    """Bytes if `text` is a bare base64 image (VLMEvalKit TSVs, some clients), else None (a path).

    A path is told apart by shape (base64 has no '.') and by the decoded bytes starting with an
    image signature, so `images/cat` is never mistaken for base64.
    """
    if len(text) < 32 or "." in text or not _BASE64_CHARS.match(text):
        return None
    try:
        data = _b64decode(text, limits, what="base64 image")
    except ImageError as e:
        if "exceeds" in str(e):
            raise
        return None
    return data if data.startswith(_MAGIC) else None


def _b64decode(payload: str, limits: ImageLimits, *, what: str) -> bytes:
    payload = "".join(payload.split())
    # 4 base64 chars carry 3 bytes: refuse oversized payloads before allocating their decoding.
    if len(payload) // 4 * 3 > limits.max_bytes + 3:
        raise ImageError(f"{what} exceeds max_bytes {limits.max_bytes} (about {len(payload) // 4 * 3} bytes)")
    try:
        if "-" in payload or "_" in payload:
            data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        else:
            data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"{what} is not valid base64: {e}") from None
    return _check_size(data, limits, what=what)


def _read_file(path_text: str, base_dir: Path | str | None, limits: ImageLimits, roots: "ImageRoots | None") -> bytes:
    """A local image file: only a regular file (never a device or a FIFO), inside `roots` when given."""
    from qvq_ray.image_files import ImageRoots, read_image_file

    if not limits.allow_local_files:
        raise ImageError(
            f"local image files are disabled (ImageLimits.allow_local_files is False): {_short(path_text)}"
        )
    path = Path(path_text).expanduser() if roots is None else Path(path_text)  # a problem file's '~' is not ours
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return read_image_file(path, roots or ImageRoots.anywhere(), limits.max_bytes)


def _check_size(data: bytes, limits: ImageLimits, *, what: str) -> bytes:
    if len(data) > limits.max_bytes:
        raise ImageError(f"{what} exceeds max_bytes {limits.max_bytes} ({len(data)} bytes)")
    if not data:
        raise ImageError(f"{what} is empty")
    return data


def _short(text: str, n: int = 80) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


# ---------------------------------------------------------------- URLs (opt-in)


def check_public_host(host: str, port: int | None = None) -> None:
    """Raise ImageError unless every address `host` resolves to is public (SSRF guard).

    Resolving first and checking every address catches names that point at loopback, private,
    link-local (cloud metadata at 169.254.169.254) or reserved ranges.
    """
    import ipaddress
    import socket

    if not host:
        raise ImageError("image URL has no host")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ImageError(f"cannot resolve image URL host {host!r}: {e}") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            raise ImageError(f"image URL host {host!r} resolves to a non-public address ({ip}); refused")


def fetch_image_url(url: str, limits: ImageLimits | None = None) -> bytes:
    """GET an http(s) image within the byte and time limits, re-checking the host on each redirect.

    Simple by design: the host is checked by resolving it just before the request; a DNS answer
    that changes between the check and the connect (rebinding) is not defended against here.
    """
    import time
    from urllib.parse import urljoin, urlsplit

    import httpx

    limits = limits or _DEFAULT_LIMITS
    if not limits.allow_urls:
        raise ImageError("URL images are disabled (ImageLimits.allow_urls is False)")
    deadline = time.monotonic() + limits.url_timeout_s
    with httpx.Client(follow_redirects=False, timeout=limits.url_timeout_s, trust_env=False) as client:
        for _ in range(limits.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise ImageError(f"unsupported image URL scheme in {_short(url)}")
            check_public_host(parts.hostname or "", parts.port)
            try:
                with client.stream("GET", url, headers={"Accept": "image/*"}) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise ImageError(f"redirect without Location from {_short(url)}")
                        url = urljoin(url, location)
                        continue
                    if resp.status_code != 200:
                        raise ImageError(f"fetching {_short(url)} returned HTTP {resp.status_code}")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                        raise ImageError(
                            f"image at {_short(url)} is {declared} bytes, over max_bytes {limits.max_bytes}"
                        )
                    buf = bytearray()
                    for chunk in resp.iter_bytes():
                        buf += chunk
                        if len(buf) > limits.max_bytes:
                            raise ImageError(f"image at {_short(url)} exceeds max_bytes {limits.max_bytes}")
                        if time.monotonic() > deadline:
                            raise ImageError(f"fetching {_short(url)} took over {limits.url_timeout_s}s")
                    return _check_size(bytes(buf), limits, what=f"image at {_short(url)}")
            except httpx.HTTPError as e:
                raise ImageError(f"cannot fetch image {_short(url)}: {type(e).__name__}: {e}") from None
    raise ImageError(f"too many redirects fetching {_short(url)}")


# ---------------------------------------------------------------- decoding


def decode_image(data: bytes, limits: ImageLimits | None = None) -> "PILImage":
    """Decode to an RGB PIL image, refusing oversized, unknown, corrupt or truncated data.

    The pixel limit is checked on the header's size before any pixel is decoded. Transparent
    images are put on white, as Qwen's own loader does: a black-on-transparent diagram would
    otherwise turn all black.
    """
    return _to_rgb(_open_checked(data, limits or _DEFAULT_LIMITS))


def _open_header(data: bytes, limits: ImageLimits) -> "PILImage":
    """Open lazily (header only) with the byte, format and pixel checks; no pixel is decoded yet."""
    from PIL import Image, UnidentifiedImageError

    data = _check_size(bytes(data), limits, what="image")
    try:
        with warnings.catch_warnings():
            # Our own max_pixels_decoded (checked just below) decides; PIL's warning is noise. We do
            # not lower the process-wide Image.MAX_IMAGE_PIXELS: other code shares that global.
            # (catch_warnings is not thread-safe; a race can only leave this warning silenced.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        # PIL's own header check (over 2 x Image.MAX_IMAGE_PIXELS) fires inside open, before ours.
        raise ImageError(
            f"image refused as a decompression bomb before decoding ({e}); "
            f"max_pixels_decoded is {limits.max_pixels_decoded}"
        ) from None
    except UnidentifiedImageError:
        # Never quote the data: a file named by a problem set may be anyone's (issue 20).
        raise ImageError(f"not a recognized image (not a {', '.join(ALLOWED_FORMATS[:-1])} or {ALLOWED_FORMATS[-1]} file)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"corrupt image header: {_no_bytes(e)}") from None

    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has an empty size {width}x{height}")
    if width * height > limits.max_pixels_decoded:
        raise ImageError(
            f"image is {width}x{height} = {width * height} pixels, over max_pixels_decoded "
            f"{limits.max_pixels_decoded} (refused before decoding)"
        )
    return im


def _open_checked(data: bytes, limits: ImageLimits) -> "PILImage":
    """Open with all header checks, then decode the first frame."""
    from PIL import Image

    im = _open_header(data, limits)
    try:
        im.seek(0)  # first frame of an animated GIF/WebP
        im.load()
    except Image.DecompressionBombError as e:
        raise ImageError(f"image refused as a decompression bomb: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise ImageError(f"corrupt or truncated {im.format} image: {_no_bytes(e)}") from None
    return im


def _no_bytes(exc: BaseException) -> str:
    """A decoder's message, unless it quotes the data (PIL's TIFF plugin shows its header bytes):
    then only the exception's type."""
    text = str(exc)
    return type(exc).__name__ if re.search(r"""\bb['"]|\\x[0-9a-fA-F]{2}""", text) else text


def _to_rgb(im: "PILImage") -> "PILImage":
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


# ---------------------------------------------------------------- Qwen2-VL sizing


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN2VL_FACTOR,
    min_pixels: int = 4 * QWEN2VL_FACTOR**2,
    max_pixels: int = 16384 * QWEN2VL_FACTOR**2,
) -> tuple[int, int]:
    """Qwen2-VL's target (height, width): multiples of `factor`, pixels within [min, max], aspect kept.

    Same rule as qwen_vl_utils / transformers' Qwen2VLImageProcessor (defaults are the
    preprocessor_config's 3136 and 12845056), so token counts computed here match the model's.
    Visual tokens per image = (h / 28) * (w / 28).
    """
    if height <= 0 or width <= 0:
        raise ImageError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ImageError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got "
            f"{max(height, width) / min(height, width):.1f} ({height}x{width})"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        # max(factor, ...): for very thin images the floor reaches 0, which no processor accepts.
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class PixelBudget:
    """Pixels one problem or request may still decode (limits.max_total_pixels_decoded), charged
    from each image's header before its pixels are decoded."""

    def __init__(self, limits: ImageLimits | None = None):
        self.limit = (limits or _DEFAULT_LIMITS).max_total_pixels_decoded
        self.used = 0

    def charge(self, width: int, height: int) -> None:
        if self.used + width * height > self.limit:
            raise ImageError(
                f"images of this request total more than max_total_pixels_decoded {self.limit} pixels "
                f"({self.used} decoded, the next is {width}x{height}; refused before decoding)"
            )
        self.used += width * height


def prepare_image(
    data: bytes,
    *,
    min_pixels: int = 4 * QWEN2VL_FACTOR**2,
    max_pixels: int = 1280 * QWEN2VL_FACTOR**2,
    limits: ImageLimits | None = None,
    budget: PixelBudget | None = None,
) -> bytes:
    """Validate and resize one image to its smart_resize size; return encoded bytes for the engine.

    Returns the original bytes when the image is already the right size, PNG/JPEG and plain
    RGB/grey (no second lossy encode); otherwise lossless PNG of the resized RGB image. A plain
    RGB/grey image is resized before the RGB conversion (a third of the work for grey) and big
    reductions go through `reduce()` first (PIL's reducing_gap): a 7000x7000 page costs
    tenths of a second, not seconds.
    """
    from PIL import Image

    limits = limits or _DEFAULT_LIMITS
    header = _open_header(data, limits)
    if budget is not None:
        budget.charge(*header.size)
    raw = _open_checked(data, limits)
    h, w = smart_resize(raw.height, raw.width, min_pixels=min_pixels, max_pixels=max_pixels)
    if (h, w) == (raw.height, raw.width) and raw.format in ("PNG", "JPEG") and raw.mode in ("RGB", "L"):
        return bytes(data)
    im = raw if raw.mode in ("RGB", "L") else _to_rgb(raw)
    if (h, w) != (im.height, im.width):
        im = im.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    im = _to_rgb(im)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def prepare_problem_images(
    refs: "Sequence[ImageRef | bytes | str]",
    model: "ModelConfig | None" = None,
    *,
    base_dir: Path | str | None = None,
    limits: ImageLimits | None = None,
    roots: "ImageRoots | None" = None,
) -> list[bytes]:
    """Load and prepare every image of one problem with the model's pixel range.

    The count limit is the smaller of `limits.max_images` and the model's
    `max_images_per_prompt`, checked before any image is read. `roots`: the folders local files
    must lie in (see `load_image_bytes`).
    """
    from qvq_ray.config import ModelConfig

    model = model or ModelConfig()
    limits = limits or _DEFAULT_LIMITS
    most = min(limits.max_images, model.max_images_per_prompt)
    if len(refs) > most:
        raise ImageError(f"too many images: {len(refs)} > {most} allowed in one prompt")
    budget = PixelBudget(limits)
    return [
        prepare_image(
            load_image_bytes(ref, base_dir=base_dir, limits=limits, roots=roots),
            min_pixels=model.min_pixels,
            max_pixels=model.max_pixels,
            limits=limits,
            budget=budget,
        )
        for ref in refs
    ]


def load_and_prepare(
    ref: "ImageRef | bytes | str", model: "ModelConfig", limits: ImageLimits | None = None, budget: PixelBudget | None = None
) -> bytes:
    """One image from an online request: no local files ever, URLs only if the limits allow them.
    Pass the request's `budget` so all its images together stay within max_total_pixels_decoded."""
    online = (limits or _DEFAULT_LIMITS).model_copy(update={"allow_local_files": False})
    return prepare_image(
        load_image_bytes(ref, limits=online),
        min_pixels=model.min_pixels,
        max_pixels=model.max_pixels,
        limits=online,
        budget=budget,
    )
