"""Image decoding: bytes on disk -> upright RGB uint8 array, or a :class:`DecodeError`.

Bad input is data: every failure becomes a ``DecodeError`` with a short ``kind`` (the status the
filter counts), never a crash or a hang. JPEGs are decoded with Pillow's ``draft`` (DCT-domain
downscale) when the caller says how small the image may be, which is most of the filter's speed.

Statuses (``DecodeError.kind``):

=============== ==========================================================================
``missing``     the path does not exist (e.g. deleted between listing and reading)
``broken_link`` a symbolic link whose target does not exist
``symlink_loop`` a symbolic link that points (through others) back at itself
``not_a_file``  a directory, FIFO, socket or device (never opened for reading: no hang)
``unreadable``  the file exists but cannot be read (permission denied, I/O error)
``empty``       zero bytes
``not_image``   not an image format we decode (text, HTML error page, ...)
``too_large``   header declares more than ``max_pixels`` pixels, or the file is over
                ``max_bytes`` (decompression bombs, huge files)
``too_small``   zero-pixel image
``truncated``   image data ends early
``corrupt``     anything else Pillow or the PNG checksum check refuses
=============== ==========================================================================
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from textsieve.errors import DecodeError

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger headers are refused as decompression bombs
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # no web image is this big; reading it would cost memory

# Magic numbers of the formats we decode; anything else is "not_image" before Pillow sees it.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def sniff(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or None if it is not an image we decode."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def _not_image_detail(head: bytes) -> str:
    """A short human description of a non-image file (error pages are the usual suspects)."""
    low = head.lstrip()[:64].lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image (HTML document)"
    if low.startswith((b"<?xml", b"<svg")):
        return "not an image (XML/SVG document)"
    if low.startswith((b"{", b"[")):
        return "not an image (JSON text)"
    return "not an image (unknown signature)"


def read_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a regular file completely, turning every failure into a :class:`DecodeError`.

    The file is opened non-blocking and checked with ``fstat`` before reading, so a FIFO or a
    device never blocks the caller, and a file swapped between a check and the open is still
    caught.

    Args:
        path: the file.
        max_bytes: larger files are refused (``too_large``) without reading them.

    Returns:
        The file's bytes.

    Raises:
        DecodeError: ``missing``, ``broken_link``, ``symlink_loop``, ``not_a_file``,
            ``unreadable`` or ``too_large``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise DecodeError("broken symbolic link", "broken_link") from None
        raise DecodeError("file not found", "missing") from None
    except IsADirectoryError:
        raise DecodeError("is a directory", "not_a_file") from None
    except PermissionError:
        raise DecodeError("permission denied", "unreadable") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DecodeError("symbolic link loop", "symlink_loop") from None
        if e.errno == errno.ENXIO:  # a socket, or a FIFO without a writer
            raise DecodeError("not a regular file", "not_a_file") from None
        raise DecodeError(f"cannot open: {e.strerror or e}", "unreadable") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError("is a directory", "not_a_file")
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError("not a regular file", "not_a_file")
        if st.st_size > max_bytes:
            raise DecodeError(f"{st.st_size} bytes exceeds max_bytes={max_bytes}", "too_large")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except IsADirectoryError:
        raise DecodeError("is a directory", "not_a_file") from None
    except OSError as e:
        raise DecodeError(f"cannot read: {e.strerror or e}", "unreadable") from None
    finally:
        os.close(fd)


def check_png(data: bytes) -> None:
    """Verify the chunk structure and every CRC of a PNG (Pillow skips the IDAT checksums).

    Raises:
        DecodeError: ``truncated`` when it ends before IEND, ``corrupt`` on a bad CRC.
    """
    pos, n = len(_PNG_SIG), len(data)
    while True:
        if pos + 8 > n:
            raise DecodeError("PNG ends before its IEND chunk", "truncated")
        length = int.from_bytes(data[pos:pos + 4], "big")
        ctype = data[pos + 4:pos + 8]
        end = pos + 8 + length
        if length > 0x7FFFFFFF:
            raise DecodeError(f"PNG chunk {ctype!r} has an invalid length", "corrupt")
        if end + 4 > n:
            raise DecodeError(f"PNG ends inside its {ctype!r} chunk", "truncated")
        crc = int.from_bytes(data[end:end + 4], "big")
        if zlib.crc32(data[pos + 4:end]) != crc:
            name = ctype.decode("latin-1")
            raise DecodeError(f"bad CRC in PNG chunk {name}", "corrupt")
        if ctype == b"IEND":
            return
        pos = end + 4


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparency is composited on white, 16-bit scaled to 8-bit."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(
    source: str | Path | bytes,
    *,
    min_short: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_truncated: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Decode an image into an upright RGB ``PIL.Image`` (what :func:`decode_image` wraps).

    The filter uses this form to resize with Pillow before any numpy copy is made.
    Arguments, statuses and behaviour are those of :func:`decode_image`.
    """
    data = source if isinstance(source, bytes) else read_file(source, max_bytes)
    if not data:
        raise DecodeError("empty file", "empty")
    fmt = sniff(data[:16])
    if fmt is None:
        raise DecodeError(_not_image_detail(data[:256]), "not_image")
    if fmt == "PNG":
        check_png(data)
    # Pillow's own bomb limit is a module global; it is lifted for this call (reset below) and
    # replaced by our header check, so that --max-pixels works in both directions.
    old_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            img = Image.open(io.BytesIO(data), formats=[fmt])
            w, h = img.size
            if w * h > max_pixels:
                raise DecodeError(f"{w}x{h} exceeds max_pixels={max_pixels}", "too_large")
            if w < 1 or h < 1:
                raise DecodeError(f"empty image {w}x{h}", "too_small")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            orientation = 1
            if fmt in ("JPEG", "WEBP", "TIFF", "PNG"):
                orientation = img.getexif().get(0x0112, 1)
            if fmt == "JPEG" and min_short:
                # draft() picks the largest DCT scale (1/2, 1/4, 1/8) whose size is >= the request.
                # Rotations swap axes, but a square request on the short side is safe either way.
                scale = max(1, min(w, h) // min_short)
                if scale >= 2:
                    img.draft("RGB", (max(1, w // scale), max(1, h // scale)))
            if allow_truncated:
                # Pillow only has a module-level switch; it is set for this call and reset below.
                ImageFile.LOAD_TRUNCATED_IMAGES = True
            img.load()
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError(str(e), "too_large") from None
    except OSError as e:  # UnidentifiedImageError is an OSError
        msg = str(e)
        kind = "truncated" if "truncated" in msg.lower() else "corrupt"
        raise DecodeError(msg or type(e).__name__, kind) from None
    except (ValueError, SyntaxError, IndexError, TypeError, EOFError, MemoryError) as e:
        raise DecodeError(f"{type(e).__name__}: {e}", "corrupt") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
        if allow_truncated:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
    if rgb.width < 1 or rgb.height < 1:
        raise DecodeError(f"empty image {rgb.width}x{rgb.height}", "too_small")
    return rgb


def decode_image(
    source: str | Path | bytes,
    *,
    min_short: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_truncated: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Decode an image file (or its bytes) into an upright RGB array.

    Args:
        source: a path or the file's bytes.
        min_short: if given, JPEGs may be DCT-downscaled (``draft``) as long as the short side
            stays >= this value; the caller resizes further.
        max_pixels: images whose header declares more pixels are refused (``too_large``).
        allow_truncated: decode what is there of a truncated file instead of refusing it.
        max_bytes: files larger than this are refused (``too_large``) without being read.

    Returns:
        (H, W, 3) uint8 array, EXIF orientation applied, first frame of animations.

    Raises:
        DecodeError: with ``kind`` one of the statuses in the module docstring.
    """
    rgb = open_image(
        source, min_short=min_short, max_pixels=max_pixels, allow_truncated=allow_truncated,
        max_bytes=max_bytes,
    )
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DecodeError(f"unexpected decoded shape {arr.shape}", "corrupt")
    return arr


def image_size(path: str | Path) -> tuple[int, int, int]:
    """(width, height, exif_orientation) of a stored image, from its header only."""
    try:
        with Image.open(path) as img:
            return img.size[0], img.size[1], int(img.getexif().get(0x0112, 1) or 1)
    except (OSError, ValueError, SyntaxError) as e:
        raise DecodeError(f"{path}: {e}", "corrupt") from None
