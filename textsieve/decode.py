"""Image decoding: bytes on disk -> upright RGB uint8 array, or a :class:`DecodeError`.

Bad input is data: every failure becomes a ``DecodeError`` with a short ``kind`` (the status the
filter counts), never a crash. JPEGs are decoded with Pillow's ``draft`` (DCT-domain downscale)
when the caller says how small the image may be, which is most of the filter's speed.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from textsieve.errors import DecodeError

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: larger headers are refused as decompression bombs

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


def sniff(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or None if it is not an image we decode."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


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


def decode_image(
    source: str | Path | bytes,
    *,
    min_short: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_truncated: bool = False,
) -> np.ndarray:
    """Decode an image file (or its bytes) into an upright RGB array.

    Args:
        source: a path or the file's bytes.
        min_short: if given, JPEGs may be DCT-downscaled (``draft``) as long as the short side
            stays >= this value; the caller resizes further.
        max_pixels: images whose header declares more pixels are refused (``too_large``).
        allow_truncated: decode what is there of a truncated file instead of refusing it.

    Returns:
        (H, W, 3) uint8 array, EXIF orientation applied, first frame of animations.

    Raises:
        DecodeError: with ``kind`` one of ``empty``, ``not_image``, ``too_large``, ``too_small``,
            ``truncated``, ``corrupt``, ``unreadable``.
    """
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except IsADirectoryError:
        raise DecodeError("is a directory", "unreadable") from None
    except FileNotFoundError:
        raise DecodeError("file not found", "missing") from None
    except PermissionError:
        raise DecodeError("permission denied", "unreadable") from None
    except OSError as e:
        raise DecodeError(f"cannot read: {e.strerror or e}", "unreadable") from None
    if not data:
        raise DecodeError("empty file", "empty")
    fmt = sniff(data[:16])
    if fmt is None:
        raise DecodeError("not an image (unknown signature)", "not_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            w, h = img.size
            if w * h > max_pixels:
                raise DecodeError(f"{w}x{h} exceeds max_pixels={max_pixels}", "too_large")
            if w < 1 or h < 1:
                raise DecodeError(f"empty image {w}x{h}", "too_small")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            orientation = img.getexif().get(0x0112, 1) if fmt in ("JPEG", "WEBP", "TIFF", "PNG") else 1
            if fmt == "JPEG" and min_short:
                # draft() picks the largest DCT scale (1/2, 1/4, 1/8) whose size is >= the request.
                # Rotations swap axes, but a square request on the short side is safe either way.
                scale = max(1, min(w, h) // min_short)
                if scale >= 2:
                    img.draft("RGB", (max(1, w // scale), max(1, h // scale)))
            if allow_truncated:
                # Pillow only has a module-level switch; it is set for this call and reset below
                # (workers are processes, so no other thread sees it).
                ImageFile.LOAD_TRUNCATED_IMAGES = True
            img.load()
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
            arr = np.asarray(rgb, dtype=np.uint8)
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
        if allow_truncated:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
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
