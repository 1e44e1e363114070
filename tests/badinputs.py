"""Real hostile and unusual image files, written into a folder (shared by the decode, walk and
filter tests). Every builder returns the expected status of ``decode_image`` on the file."""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from conftest import draw_scene
from PIL import Image


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


@functools.lru_cache(maxsize=2)
def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid one-colour 1-bit PNG that would decode to width*height pixels (~0.5 MB on disk)."""
    row = b"\0" + b"\0" * ((width + 7) // 8)
    comp = zlib.compressobj(1)  # fastest level: building the bomb must stay cheap
    step = 1000
    blocks = [comp.compress(row * min(step, height - i)) for i in range(0, height, step)]
    body = b"".join(blocks) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body)
            + png_chunk(b"IEND", b""))


def jpeg_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def exif_rotated(upright: Image.Image) -> bytes:
    """JPEG whose stored pixels are ``upright`` turned 90 deg, with EXIF orientation 6 to undo it.

    Quality 100 without chroma subsampling keeps the DCT symmetric, so decoding it gives nearly
    the same pixels as ``upright``.
    """
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    return jpeg_bytes(stored, quality=100, subsampling=0, exif=exif.tobytes())


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """Write one file per bad or unusual input kind. Returns {file name: expected status}.

    Inputs that need the OS (permission, symlinks, non-UTF-8 names) are made by the tests
    themselves, since their expected status depends on the caller (walk vs read).
    """
    folder.mkdir(parents=True, exist_ok=True)
    good = draw_scene((120, 90), 1, [(10, 10, 80, 30)])
    out: dict[str, str] = {}

    def put(name: str, data: bytes, status: str) -> None:
        (folder / name).write_bytes(data)
        out[name] = status

    put("zero.jpg", b"", "empty")
    full = jpeg_bytes(good, quality=90)
    put("truncated.jpg", full[: len(full) // 2], "truncated")
    buf = io.BytesIO()
    good.save(buf, "PNG")
    png = bytearray(buf.getvalue())
    idat = png.find(b"IDAT")
    length = struct.unpack(">I", png[idat - 4:idat])[0]
    png[idat + 4 + length] ^= 0xFF  # first byte of the IDAT CRC
    put("badcrc.png", bytes(png), "corrupt")
    put("notes.jpg", b"just some text, not an image\n" * 4, "not_image")
    put("error.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "not_image")
    put("bomb.png", bomb_png(), "too_large")
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(buf, "PNG")
    put("one.png", buf.getvalue(), "ok")
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8)[:, None, None], (40, 2, 3)).reshape(
        10240, 2, 3)[:10000]).save(buf, "PNG")
    put("thin.png", buf.getvalue(), "ok")
    put("cmyk.jpg", jpeg_bytes(good.convert("CMYK")), "ok")
    buf = io.BytesIO()
    Image.fromarray(np.asarray(good.convert("L"), dtype=np.uint16) * 257).save(buf, "PNG")
    put("gray16.png", buf.getvalue(), "ok")
    pal = good.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=0)
    put("palette_alpha.png", buf.getvalue(), "ok")
    frames = [draw_scene((64, 48), s) for s in (2, 3, 4)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("anim.gif", buf.getvalue(), "ok")
    buf = io.BytesIO()
    good.save(buf, "WEBP", quality=80)
    put("still.webp", buf.getvalue(), "ok")
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    put("anim.webp", buf.getvalue(), "ok")
    put("gray.jpg", jpeg_bytes(good.convert("L")), "ok")
    put("rotated.jpg", exif_rotated(good), "ok")
    (folder / "dir.jpg").mkdir()  # a directory with an image name (empty)
    return out


def non_utf8_name(folder: Path) -> Path:
    """A real file whose name is not valid UTF-8 (Latin-1 'é'), holding a small JPEG."""
    raw = os.fsencode(folder) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(jpeg_bytes(draw_scene((64, 64), 5)))
    return Path(os.fsdecode(raw))
