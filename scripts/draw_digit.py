"""Draw the hand-written digit that keras/mnist_apply.ipynb classifies.

Usage: python scripts/draw_digit.py [OUTPUT.png]

The picture imitates a phone photo of a digit written with a ballpoint pen:
blue ink of uneven width on off-white paper that is lit unevenly, with the
digit away from the centre, in colour and at a size far from 28x28. It is a
three, drawn as two bowls that meet in the middle. Everything is computed
here, so the file can be remade exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 360, 280
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "keras" / "images" / "three.png"
)


def three_stroke(points: int = 120) -> np.ndarray:
    """Return the pen path of a three as (x, y) pixel positions."""
    # Upper bowl: from the top left, round to the right, back to the middle.
    upper = np.linspace(-0.75 * np.pi, 0.5 * np.pi, points // 2)
    top = np.column_stack([np.sin(upper + np.pi / 2), -np.cos(upper + np.pi / 2)])
    top = top * [38, 34] + [200, 92]
    # Lower bowl: from the middle, round to the right, ending low on the left.
    lower = np.linspace(-0.5 * np.pi, 0.8 * np.pi, points // 2)
    bottom = np.column_stack([np.cos(lower), np.sin(lower)]) * [46, 42] + [202, 168]
    path = np.concatenate([top, bottom])
    wobble = np.random.default_rng(3).normal(scale=1.2, size=path.shape)
    return path + wobble


def draw(output: Path) -> None:
    """Render the picture and save it as an RGB PNG."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    light = 235 - 30 * (columns / WIDTH) - 15 * (rows / HEIGHT)
    paper = np.stack([light, light - 4, light - 12], axis=-1).astype(np.uint8)
    image = Image.fromarray(paper, "RGB")
    pen = ImageDraw.Draw(image)
    path = three_stroke()
    widths = 13 + 3 * np.sin(np.linspace(0, 3 * np.pi, len(path)))
    for (x0, y0), (x1, y1), width in zip(path[:-1], path[1:], widths, strict=False):
        pen.line([(x0, y0), (x1, y1)], fill=(30, 45, 120), width=int(width))
        pen.ellipse(
            [x1 - width / 2, y1 - width / 2, x1 + width / 2, y1 + width / 2],
            fill=(30, 45, 120),
        )
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    output.parent.mkdir(parents=True, exist_ok=True)
    image.save(output)
    print(f"Saved {output}")


if __name__ == "__main__":
    draw(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
