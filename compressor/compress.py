"""Today's single output: one image downscaled to one size in one format.

:func:`compress` is the one-size, one-format case of compressor.renditions (the worker renders
the whole ladder); the benchmarks measure the ladder against it, and the tests of decoding,
orientation, colour and modes run through it. :func:`init_worker` sets up the pool's processes.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from PIL import Image

from compressor.decode import target_size
from compressor.rejected import ImageRejected
from compressor.renditions import FORMATS, OutputFormat, RenditionOptions, output_format, render
from config.logging import setup_logging

__all__ = [
    "CompressOptions",
    "CompressedImage",
    "ImageRejected",
    "compress",
    "init_worker",
    "output_format",
    "target_size",
]


@dataclass(frozen=True, slots=True)
class CompressOptions:
    max_dimension: int = 1600
    """Longest side of the output in pixels; smaller images are never upscaled."""
    quality: int = 80
    output_format: OutputFormat = "jpeg"
    max_pixels: int = 50_000_000
    """Sources with more pixels are rejected as decompression bombs before decoding."""

    def __post_init__(self) -> None:
        if self.max_dimension < 1:
            raise ValueError(f"max_dimension must be >= 1, got {self.max_dimension}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.output_format not in FORMATS:
            raise ValueError(f"output_format must be one of {sorted(FORMATS)}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")

    def renditions(self) -> RenditionOptions:
        """The same output as a one-rendition ladder."""
        q = self.quality
        return RenditionOptions(
            sizes=(self.max_dimension,),
            formats=(self.output_format,),
            quality_jpeg=q,
            quality_webp=q,
            quality_avif=q,
            max_pixels=self.max_pixels,
        )


@dataclass(frozen=True, slots=True)
class CompressedImage:
    data: bytes
    width: int
    height: int
    content_type: str
    extension: str
    source_format: str
    """Pillow's name of the decoded format: JPEG, PNG, GIF, WEBP, BMP, TIFF, MPO."""
    source_width: int
    """Stored width of the source, before EXIF orientation."""
    source_height: int


def init_worker(max_pixels: int) -> None:
    """Initializer for the worker processes of the compression pool.

    Children ignore SIGINT: Ctrl-C reaches the whole process group, and the parent decides
    how to drain and shut the pool down. ``max_pixels`` should be the pool's
    ``max_pixels`` option: Pillow's own check (which the decoder also reports as
    ``decompression_bomb``) fires at twice this value, so a lower global would reject images
    the options allow.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Image.MAX_IMAGE_PIXELS = max_pixels
    if not logging.getLogger().handlers:
        # A pool process starts with no logging set up, and its warnings (an ICC profile ignored,
        # compressor.colour) would reach stderr as a bare event name, without their fields.
        fmt = os.environ.get("LOG_FORMAT", "json")
        setup_logging("warning", fmt if fmt in ("json", "console") else "json")


def compress(data: bytes, options: CompressOptions) -> CompressedImage:
    """Turn one downloaded image into a stripped, downscaled JPEG, WebP or AVIF.

    Raises :class:`ImageRejected` for input that can never succeed. Any other exception
    (MemoryError, an encoder missing from the Pillow build) is a fault of this machine.
    """
    rendered = render(data, options.renditions())
    (only,) = rendered.renditions
    return CompressedImage(
        data=only.data,
        width=only.width,
        height=only.height,
        content_type=only.content_type,
        extension=only.extension,
        source_format=rendered.source_format,
        source_width=rendered.source_width,
        source_height=rendered.source_height,
    )
