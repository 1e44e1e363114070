"""decode_image on real bad and unusual files: every one gives an array or a DecodeError kind."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from badinputs import bomb_png, exif_rotated, jpeg_bytes, non_utf8_name, write_bad_inputs
from conftest import draw_scene
from PIL import Image

from textsieve.decode import check_png, decode_image, read_file, sniff
from textsieve.errors import DecodeError


def kind_of(path: Path | bytes, **kw: object) -> str:
    try:
        decode_image(path, min_short=256, **kw)  # type: ignore[arg-type]
    except DecodeError as e:
        return e.kind
    return "ok"


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, write_bad_inputs(folder)


def test_every_bad_input_gets_its_status(bad_dir: tuple[Path, dict[str, str]]) -> None:
    folder, expected = bad_dir
    got = {name: kind_of(folder / name) for name in expected}
    assert got == expected
    assert kind_of(folder / "dir.jpg") == "not_a_file"


def test_html_error_page_is_named(bad_dir: tuple[Path, dict[str, str]]) -> None:
    with pytest.raises(DecodeError, match="HTML"):
        decode_image(bad_dir[0] / "error.jpg")


def test_bad_png_crc_is_caught_even_though_pillow_skips_it(
        bad_dir: tuple[Path, dict[str, str]]) -> None:
    data = (bad_dir[0] / "badcrc.png").read_bytes()
    with pytest.raises(DecodeError, match="CRC in PNG chunk IDAT"):
        check_png(data)
    assert np.asarray(Image.open(bad_dir[0] / "badcrc.png")).shape == (90, 120, 3)


def test_bomb_is_refused_from_the_header_and_limit_is_configurable() -> None:
    with pytest.raises(DecodeError, match="30000x30000 exceeds max_pixels") as e:
        decode_image(bomb_png())
    assert e.value.kind == "too_large"
    small = bomb_png(3000, 2000)
    assert kind_of(small, max_pixels=5_000_000) == "too_large"
    assert decode_image(small, max_pixels=6_000_000).shape == (2000, 3000, 3)
    # Pillow's global limit is restored after each call.
    assert Image.MAX_IMAGE_PIXELS is not None


def test_max_bytes_refuses_without_reading(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(jpeg_bytes(draw_scene((64, 64), 1)))
    assert kind_of(p, max_bytes=100) == "too_large"
    assert kind_of(p) == "ok"


def test_unusual_modes_become_sensible_rgb(bad_dir: tuple[Path, dict[str, str]]) -> None:
    folder = bad_dir[0]
    gray = decode_image(folder / "gray.jpg")
    assert gray.shape == (90, 120, 3) and (gray[..., 0] == gray[..., 2]).all()
    g16 = decode_image(folder / "gray16.png")
    ref = np.asarray(Image.open(folder / "gray.jpg").convert("L"), dtype=np.int32)
    assert np.abs(g16[..., 0].astype(np.int32) - ref).mean() < 8  # scaled, not clipped to 255
    cmyk = decode_image(folder / "cmyk.jpg").astype(np.int32)
    good = np.asarray(draw_scene((120, 90), 1, [(10, 10, 80, 30)]), dtype=np.int32)
    assert np.abs(cmyk - good).mean() < 12
    pal = decode_image(folder / "palette_alpha.png")
    idx = np.asarray(Image.open(folder / "palette_alpha.png"))
    assert (pal[idx == 0] == 255).all()  # the transparent colour is composited on white
    assert decode_image(folder / "one.png").tolist() == [[[200, 10, 10]]]
    assert decode_image(folder / "thin.png").shape == (10000, 2, 3)


def test_animations_give_their_first_frame(bad_dir: tuple[Path, dict[str, str]]) -> None:
    first = np.asarray(draw_scene((64, 48), 2), dtype=np.int32)
    for name, tol in (("anim.gif", 40), ("anim.webp", 12)):
        arr = decode_image(bad_dir[0] / name).astype(np.int32)
        other = np.asarray(draw_scene((64, 48), 3), dtype=np.int32)
        assert np.abs(arr - first).mean() < tol < np.abs(arr - other).mean(), name


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    upright = draw_scene((120, 80), 3, [(5, 5, 60, 20)])
    p = tmp_path / "r.jpg"
    p.write_bytes(exif_rotated(upright))
    assert Image.open(p).size == (80, 120)  # stored sideways
    arr = decode_image(p).astype(np.int32)
    assert arr.shape == (80, 120, 3)
    assert np.abs(arr - np.asarray(upright, dtype=np.int32)).mean() < 3


def test_jpeg_draft_keeps_the_short_side_needed(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(jpeg_bytes(draw_scene((1200, 900), 4)))
    arr = decode_image(p, min_short=256)
    assert arr.shape == (450, 600, 3)  # 1/2 DCT scale: 1/4 would give a short side < 256
    assert decode_image(p).shape == (900, 1200, 3)
    assert decode_image(p, min_short=100).shape == (113, 150, 3)  # 1/8: 113 >= 100


def test_file_system_oddities(tmp_path: Path) -> None:
    (tmp_path / "target.jpg").write_bytes(jpeg_bytes(draw_scene((32, 32), 1)))
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "broken.jpg")
    os.symlink(tmp_path / "loop_b.jpg", tmp_path / "loop_a.jpg")
    os.symlink(tmp_path / "loop_a.jpg", tmp_path / "loop_b.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")
    assert kind_of(tmp_path / "broken.jpg") == "broken_link"
    assert kind_of(tmp_path / "loop_a.jpg") == "symlink_loop"
    assert kind_of(tmp_path / "missing.jpg") == "missing"
    done: list[str] = []
    t = threading.Thread(target=lambda: done.append(kind_of(tmp_path / "fifo.jpg")), daemon=True)
    t.start()
    t.join(10)
    assert done == ["not_a_file"]  # a FIFO is never read, so it cannot block
    assert read_file(non_utf8_name(tmp_path))[:3] == b"\xff\xd8\xff"


def test_unreadable_file_without_permission() -> None:
    # root reads anything, so the check runs as 'nobody' in a child process when we are root.
    folder = tempfile.mkdtemp(prefix="textsieve-perm-")
    try:
        os.chmod(folder, 0o755)
        p = Path(folder) / "secret.jpg"
        p.write_bytes(jpeg_bytes(draw_scene((32, 32), 1)))
        os.chmod(p, 0)
        if os.geteuid() != 0:
            assert kind_of(p) == "unreadable"
            return
        # Fork (the interpreter under /root is not executable by 'nobody'), drop privileges in
        # the child, decode, and report the status through a pipe.
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(wfd, kind_of(p).encode())
            except OSError as e:
                os.write(wfd, f"setuid failed: {e}".encode())
            finally:
                os._exit(0)
        os.close(wfd)
        os.waitpid(pid, 0)
        with os.fdopen(rfd, "rb") as f:
            got = f.read().decode()
        if got.startswith("setuid failed"):
            pytest.skip(got)
        assert got == "unreadable"
    finally:
        for f in Path(folder).iterdir():
            f.unlink()
        os.rmdir(folder)


def test_sniff_ignores_extensions() -> None:
    png = Image.new("RGB", (4, 4))
    assert sniff(jpeg_bytes(png)[:16]) == "JPEG"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff(b"<html>") is None
