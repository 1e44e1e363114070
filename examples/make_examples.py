"""Regenerate the sample images in this folder (synthetic scenes drawn with Pillow, no photos).

    python examples/make_examples.py

Three pictures carry text (a shop sign, a tilted poster, a street-name plate), three carry none
(a landscape-like gradient, a still life of shapes, a textured wall). They are made here so that
the repository holds no third-party images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent


def backdrop(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(20, 200, 3)
    arr = top[None, None] * (1 - yy[..., None]) + bottom[None, None] * yy[..., None]
    arr += 25 * np.sin(xx[..., None] * rng.uniform(3, 9) + rng.uniform(0, 6))
    arr += rng.normal(0, 7, arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, w / 5)
        d.ellipse(
            (cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3))
        )
    return img.filter(ImageFilter.GaussianBlur(2))


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def main() -> None:
    w, h = 640, 480
    # 1. shop sign: a light board with dark lettering.
    img = backdrop(w, h, 1)
    d = ImageDraw.Draw(img)
    d.rectangle((120, 60, 520, 170), fill=(235, 230, 210), outline=(60, 40, 20), width=6)
    d.text((150, 85), "BAKERY & CAFE", font=font(44), fill=(120, 20, 20))
    d.text((200, 135), "open daily 7-19", font=font(24), fill=(30, 30, 30))
    img.save(HERE / "text_shop_sign.jpg", quality=88)
    # 2. tilted poster: text rotated by 12 degrees.
    img = backdrop(w, h, 2)
    poster = Image.new("RGBA", (300, 200), (250, 250, 245, 255))
    pd = ImageDraw.Draw(poster)
    pd.text((20, 30), "CONCERT", font=font(56), fill=(10, 10, 120, 255))
    pd.text((20, 110), "Saturday 21:00", font=font(30), fill=(0, 0, 0, 255))
    poster = poster.rotate(12, expand=True, resample=Image.BICUBIC)
    img.paste(poster, (260, 170), poster)
    img.save(HERE / "text_poster.jpg", quality=88)
    # 3. street-name plate: small white text on blue.
    img = backdrop(w, h, 3)
    d = ImageDraw.Draw(img)
    d.rounded_rectangle(
        (40, 300, 300, 360), 10, fill=(20, 60, 160), outline=(255, 255, 255), width=3
    )
    d.text((60, 312), "Rue des Lilas", font=font(32), fill=(255, 255, 255))
    img.save(HERE / "text_street_plate.jpg", quality=88)
    # 4-6. no text.
    backdrop(w, h, 4).save(HERE / "plain_landscape.jpg", quality=88)
    img = backdrop(w, h, 5)
    d = ImageDraw.Draw(img)
    d.polygon([(100, 400), (220, 150), (340, 400)], fill=(200, 120, 40))
    d.ellipse((380, 220, 560, 400), fill=(60, 140, 60))
    img.save(HERE / "plain_still_life.jpg", quality=88)
    rng = np.random.default_rng(6)
    wall = rng.normal(128, 30, (h // 8, w // 8, 3)).clip(0, 255).astype(np.uint8)
    Image.fromarray(wall).resize((w, h), Image.BICUBIC).filter(ImageFilter.GaussianBlur(3)).save(
        HERE / "plain_wall.jpg", quality=88
    )


if __name__ == "__main__":
    main()
