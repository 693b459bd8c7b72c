"""A corpus of photo-like test images for measuring encoders: texture and detail, not flat fills.

Flat fills and smooth gradients flatter every modern codec (AVIF and WebP predict them almost for
free), so a corpus of those would overstate what they save on real product photos. Each scene
here mixes what photos of products have: fine texture at several scales (fabric, foliage, wood),
soft depth-of-field blur next to sharp detail, hard object edges with soft shadows, small
high-contrast detail (a label's "text"), smooth skies and backdrops carrying sensor grain, and
saturated as well as muted colours.

Everything is built from Pillow's C primitives (noise images blown up with BICUBIC give smooth
value noise; point tables map it to colours), so a 4 MP scene takes a fraction of a second, and
from a seeded ``random.Random`` (not Pillow's ``effect_noise``, which draws from the C library's
``rand()``), so a seed gives the same pixels every time. The sources are JPEGs at quality 92, as
cameras and stock sites deliver them, and large enough (longest side 2400) that every size of the
default ladder (320 to 1600) is made from them.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from scripts.demo.photos import encode, noise, photo_image

__all__ = ["SCENES", "CorpusImage", "corpus", "scene_image"]

Colour = tuple[int, int, int]
SOURCE_QUALITY = 92


@dataclass(frozen=True, slots=True)
class CorpusImage:
    name: str
    data: bytes
    """The encoded source (JPEG), as the worker would download it."""
    width: int
    height: int


# -- building blocks ------------------------------------------------------------------------------


def value_noise(
    size: tuple[int, int], rng: random.Random, octaves: Sequence[tuple[int, float]]
) -> Image.Image:
    """Mode L multi-octave noise: for each (cell size in pixels, weight), random values on a grid
    of that cell size blown up with BICUBIC, mixed by weight; mid-grey mean. Small cells give
    fine texture, large ones blotches and shading."""
    width, height = size
    out: Image.Image | None = None
    total = 0.0
    for cell, weight in octaves:
        grid = (max(2, width // cell + 2), max(2, height // cell + 2))
        layer = noise(grid, 70, rng).resize(
            (grid[0] * cell, grid[1] * cell), Image.Resampling.BICUBIC
        )
        layer = layer.crop((cell, cell, cell + width, cell + height))
        total += weight
        out = layer if out is None else Image.blend(out, layer, weight / total)
    assert out is not None
    return out


def stretch(image: Image.Image, low: int = 0, high: int = 255) -> Image.Image:
    """Mode L contrast stretch of the image's own 1st..99th percentile to low..high."""
    histogram = image.histogram()
    count = sum(histogram)
    cumulative, lo, hi = 0, 0, 255
    for value, n in enumerate(histogram):
        cumulative += n
        if cumulative <= count * 0.01:
            lo = value
        if cumulative <= count * 0.99:
            hi = value
    span = max(1, hi - lo)
    return image.point(
        [max(low, min(high, round(low + (v - lo) * (high - low) / span))) for v in range(256)]
    )


def colour_map(image: Image.Image, stops: Sequence[tuple[int, Colour]]) -> Image.Image:
    """Mode L to RGB through colour stops ((level 0..255, colour), ascending levels), linearly
    interpolated: a photo's tones are not a grey ramp tinted one way."""
    tables: list[list[int]] = [[], [], []]
    for v in range(256):
        for (a, ca), (b, cb) in itertools.pairwise(stops):
            if a <= v <= b:
                t = (v - a) / max(1, b - a)
                for channel in range(3):
                    tables[channel].append(round(ca[channel] + (cb[channel] - ca[channel]) * t))
                break
        else:
            colour = stops[0][1] if v < stops[0][0] else stops[-1][1]
            for channel in range(3):
                tables[channel].append(colour[channel])
    grey = image.convert("L")
    return Image.merge("RGB", [grey.point(table) for table in tables])


def grain(image: Image.Image, sigma: float, rng: random.Random) -> Image.Image:
    """Sensor-like grain over an RGB image: luminance noise, the same on every channel."""
    layer = noise(image.size, sigma, rng)
    return Image.merge("RGB", [ImageChops.add(band, layer, 1.0, -128) for band in image.split()])


def shade(image: Image.Image, light: Image.Image, strength: float) -> Image.Image:
    """Darkens an RGB image by a mode L light map: where the map is 0 by ``strength`` (0..1),
    where it is 255 not at all. Folds and side light, not a uniform exposure."""
    table = [round(255 * (1 - strength + strength * v / 255)) for v in range(256)]
    return ImageChops.multiply(image, light.point(table).convert("RGB"))


def stripes(size: tuple[int, int], period: float, angle: float, rng: random.Random) -> Image.Image:
    """Mode L fine stripes (a weave's threads, wood's grain) of ``period`` pixels at ``angle``
    degrees, each stripe's brightness random: a row of values blown up, then rotated."""
    diagonal = int((size[0] ** 2 + size[1] ** 2) ** 0.5) + 4
    count = max(2, int(diagonal / period))
    row = Image.frombytes("L", (count, 1), bytes(rng.randrange(60, 200) for _ in range(count)))
    band = row.resize((diagonal, diagonal), Image.Resampling.BICUBIC)
    band = band.rotate(angle, Image.Resampling.BILINEAR)
    left, top = (diagonal - size[0]) // 2, (diagonal - size[1]) // 2
    return band.crop((left, top, left + size[0], top + size[1]))


def soft_shadow(image: Image.Image, box: tuple[float, ...], radius: float) -> Image.Image:
    """Darkens ``image`` under a blurred ellipse: a contact shadow, soft-edged as in photos."""
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=150)
    mask = mask.filter(ImageFilter.GaussianBlur(radius))
    return Image.composite(Image.new("RGB", image.size, (15, 12, 10)), image, mask)


def label_text(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], rng: random.Random
) -> None:
    """Lines of small dark 'glyphs' in a light box: the sharp, high-contrast detail of a label or
    a care tag, which ringing and blur show first."""
    left, top, right, bottom = box
    draw.rectangle(box, fill=(238, 232, 220))
    height = max(4, (bottom - top) // 10)
    y = top + height
    while y + height < bottom - height // 2:
        x = left + height
        while x < right - 2 * height:
            glyph = rng.randrange(height // 3 + 1, height + 1)
            draw.rectangle((x, y, x + glyph // 2, y + height - 1), fill=(25, 25, 35))
            x += glyph // 2 + max(2, height // 3)
            if rng.random() < 0.15:
                x += height  # a space between words
        y += height * 2


# -- scenes ---------------------------------------------------------------------------------------


def fabric(width: int, height: int, rng: random.Random) -> Image.Image:
    """A folded knit in a saturated red: crossed fine threads, folds as soft shading, a care tag."""
    size = (width, height)
    threads = ImageChops.multiply(stripes(size, 3.2, 12, rng), stripes(size, 3.7, 102, rng)).point(
        lambda v: min(255, v * 2)
    )
    fibres = value_noise(size, rng, [(2, 0.5), (6, 0.5)])
    texture = Image.blend(threads, fibres, 0.35)
    cloth = colour_map(
        stretch(texture), [(0, (70, 8, 14)), (140, (170, 25, 35)), (255, (235, 90, 90))]
    )
    folds = stretch(value_noise(size, rng, [(width // 3, 0.6), (width // 9, 0.4)]), 40, 216)
    cloth = shade(cloth, folds, 0.6)
    draw = ImageDraw.Draw(cloth)
    label_text(
        draw, (int(width * 0.62), int(height * 0.08), int(width * 0.9), int(height * 0.3)), rng
    )
    return grain(cloth, 4, rng)


def foliage(width: int, height: int, rng: random.Random) -> Image.Image:
    """A plant against a blurred garden: leaf texture at several scales, bokeh behind it."""
    size = (width, height)
    back = colour_map(
        stretch(value_noise(size, rng, [(width // 6, 0.7), (width // 20, 0.3)])),
        [(0, (20, 40, 20)), (120, (70, 110, 50)), (200, (150, 170, 90)), (255, (230, 230, 190))],
    ).filter(ImageFilter.GaussianBlur(width / 150))
    leaves = colour_map(
        stretch(value_noise(size, rng, [(3, 0.3), (12, 0.4), (40, 0.3)])),
        [(0, (10, 35, 8)), (90, (40, 95, 25)), (170, (95, 150, 45)), (255, (200, 225, 120))],
    )
    mask = stretch(value_noise(size, rng, [(width // 10, 0.6), (width // 30, 0.4)]))
    mask = mask.point(lambda v: 255 if v > 120 else 0).filter(ImageFilter.GaussianBlur(1.2))
    image = Image.composite(leaves, back, mask)
    draw = ImageDraw.Draw(image)
    for _ in range(14):  # stems: thin hard edges
        x = rng.uniform(0, width)
        draw.line((x, height, x + rng.uniform(-0.2, 0.2) * width, rng.uniform(0.3, 0.8) * height),
                  fill=(60, 45, 25), width=max(2, width // 500))  # fmt: skip
    return grain(image, 5, rng)


def wood_table(width: int, height: int, rng: random.Random) -> Image.Image:
    """A ceramic mug on a wooden table in side light: wood grain, a glossy gradient, a shadow."""
    size = (width, height)
    rings = Image.blend(
        stripes(size, 9, 3, rng), value_noise(size, rng, [(4, 0.6), (30, 0.4)]), 0.4
    )
    wood = colour_map(
        stretch(rings), [(0, (70, 40, 20)), (130, (140, 90, 50)), (255, (210, 160, 100))]
    )
    light = Image.linear_gradient("L").rotate(90).resize(size).point(lambda v: 70 + v * 0.45)
    wood = shade(wood, light, 0.5)
    w, h = width, height
    body = (w * 0.3, h * 0.25, w * 0.62, h * 0.82)
    wood = soft_shadow(wood, (w * 0.33, h * 0.72, w * 0.8, h * 0.9), w / 60)
    glaze = (
        Image.linear_gradient("L")
        .rotate(-90)
        .resize((int(body[2] - body[0]), int(body[3] - body[1])))
    )
    glaze = colour_map(
        glaze,
        [(0, (25, 70, 120)), (150, (45, 120, 185)), (230, (170, 210, 240)), (255, (250, 250, 255))],
    )
    mask = Image.new("L", glaze.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, *glaze.size), radius=glaze.width // 8, fill=255)
    wood.paste(glaze, (int(body[0]), int(body[1])), mask)
    ImageDraw.Draw(wood).arc(
        (w * 0.55, h * 0.38, w * 0.75, h * 0.65),
        270,
        90,
        fill=(40, 110, 175),
        width=max(6, w // 60),
    )  # the handle
    return grain(wood, 3, rng)


def landscape(width: int, height: int, rng: random.Random) -> Image.Image:
    """A smooth sky with grain over textured hills: where banding and blocking show."""
    size = (width, height)
    sky = colour_map(
        Image.linear_gradient("L").resize(size),
        [(0, (60, 110, 190)), (160, (150, 190, 230)), (255, (235, 225, 210))],
    )
    clouds = stretch(value_noise(size, rng, [(width // 8, 0.6), (width // 30, 0.4)]))
    sky = Image.composite(
        Image.new("RGB", size, (245, 245, 248)), sky, clouds.point(lambda v: max(0, v - 150) * 2)
    )
    hills = colour_map(
        stretch(value_noise(size, rng, [(2, 0.25), (8, 0.35), (60, 0.4)])),
        [(0, (30, 45, 25)), (120, (85, 100, 50)), (200, (150, 140, 80)), (255, (200, 190, 150))],
    )
    ridge = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ridge)
    points = [(0, height)]
    for i in range(41):
        points.append(
            (i * width / 40, height * (0.55 + 0.12 * rng.random() + 0.08 * ((i % 7) / 7)))
        )
    points.append((width, height))
    draw.polygon(points, fill=255)
    return grain(Image.composite(hills, sky, ridge.filter(ImageFilter.GaussianBlur(1))), 4, rng)


def portrait(width: int, height: int, rng: random.Random) -> Image.Image:
    """Skin tones in soft light against a studio backdrop, with hair-fine detail: the muted,
    smooth colours where chroma subsampling and over-smoothing show."""
    size = (width, height)
    backdrop = colour_map(
        Image.radial_gradient("L").resize(size), [(0, (190, 185, 175)), (255, (90, 85, 80))]
    )
    w, h = width, height
    skin = colour_map(
        stretch(value_noise(size, rng, [(3, 0.3), (25, 0.3), (w // 4, 0.4)])),
        [(0, (150, 100, 80)), (140, (210, 160, 135)), (255, (240, 205, 185))],
    )
    face = Image.new("L", size, 0)
    ImageDraw.Draw(face).ellipse((w * 0.28, h * 0.18, w * 0.72, h * 0.78), fill=255)
    image = Image.composite(skin, backdrop, face.filter(ImageFilter.GaussianBlur(w / 200)))
    hair = colour_map(
        stretch(stripes(size, 2.5, 80, rng)), [(0, (25, 15, 10)), (255, (110, 80, 55))]
    )
    cap = Image.new("L", size, 0)
    ImageDraw.Draw(cap).ellipse((w * 0.24, h * 0.08, w * 0.76, h * 0.42), fill=255)
    ImageDraw.Draw(cap).rectangle((w * 0.2, h * 0.3, w * 0.8, h * 1.0), fill=0)
    image = Image.composite(hair, image, cap.filter(ImageFilter.GaussianBlur(2)))
    draw = ImageDraw.Draw(image)
    for x in (0.4, 0.6):  # eyes: small, sharp, high-contrast
        draw.ellipse((w * (x - 0.04), h * 0.42, w * (x + 0.04), h * 0.47), fill=(245, 245, 240))
        draw.ellipse((w * (x - 0.015), h * 0.43, w * (x + 0.015), h * 0.46), fill=(50, 35, 25))
    draw.chord((w * 0.42, h * 0.58, w * 0.58, h * 0.68), 0, 180, fill=(170, 70, 70))
    return grain(image, 3, rng)


def electronics(width: int, height: int, rng: random.Random) -> Image.Image:
    """A device on a grey seamless backdrop: brushed metal, a dark screen with a reflection, small
    printed markings, hard straight edges."""
    size = (width, height)
    w, h = width, height
    image = colour_map(
        Image.linear_gradient("L").resize(size), [(0, (235, 235, 235)), (255, (160, 162, 165))]
    )
    image = soft_shadow(image, (w * 0.18, h * 0.72, w * 0.86, h * 0.86), w / 50)
    brushed = Image.blend(stripes(size, 1.6, 0, rng), value_noise(size, rng, [(2, 1.0)]), 0.3)
    metal = colour_map(stretch(brushed, 90, 200), [(0, (120, 122, 128)), (255, (215, 218, 222))])
    body = Image.new("L", size, 0)
    ImageDraw.Draw(body).rounded_rectangle(
        (w * 0.2, h * 0.2, w * 0.82, h * 0.78), radius=w // 40, fill=255
    )
    image = Image.composite(metal, image, body)
    screen = colour_map(
        Image.linear_gradient("L").rotate(45).resize(size), [(0, (10, 12, 18)), (255, (60, 70, 85))]
    )
    glass = Image.new("L", size, 0)
    ImageDraw.Draw(glass).rectangle((w * 0.25, h * 0.26, w * 0.77, h * 0.62), fill=255)
    image = Image.composite(screen, image, glass)
    draw = ImageDraw.Draw(image)
    label_text(draw, (int(w * 0.3), int(h * 0.66), int(w * 0.72), int(h * 0.75)), rng)
    for i in range(6):  # buttons
        x = w * (0.3 + i * 0.07)
        draw.ellipse((x, h * 0.05, x + w * 0.03, h * 0.05 + w * 0.03), fill=(200, 40 + i * 30, 40))
    return grain(image, 3, rng)


def demo_photo(width: int, height: int, rng: random.Random) -> Image.Image:
    """scripts/demo/photos.py's photo (the other benchmarks' source), for continuity."""
    return photo_image(width, height, seed=rng.randrange(1 << 30))


# name: (scene, width, height)
SCENES: dict[str, tuple[Callable[[int, int, random.Random], Image.Image], int, int]] = {
    "fabric": (fabric, 2400, 1800),
    "foliage": (foliage, 2400, 1600),
    "wood-table": (wood_table, 1800, 2400),
    "landscape": (landscape, 2400, 1350),
    "portrait": (portrait, 1800, 2400),
    "electronics": (electronics, 2000, 2000),
    "demo-photo": (demo_photo, 2400, 1800),
}


def scene_image(name: str, *, seed: int = 0) -> Image.Image:
    """The RGB pixels of one scene of :data:`SCENES`."""
    scene, width, height = SCENES[name]
    return scene(width, height, random.Random(f"{name}-{seed}"))


def corpus(names: Sequence[str] | None = None, *, seed: int = 0) -> list[CorpusImage]:
    """The scenes (all of :data:`SCENES` by default) as JPEG sources at quality 92."""
    images = []
    for name in names or list(SCENES):
        image = scene_image(name, seed=seed)
        data = encode(image, "JPEG", quality=SOURCE_QUALITY)
        images.append(CorpusImage(name, data, image.width, image.height))
    return images
