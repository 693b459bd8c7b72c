"""SSIM of decoded renditions against their references, in a helper process with numpy.

The project's .venv has no numpy (nothing in the product needs it, and requirements.txt is the
product's), so this runs under bench/.venv-vips (numpy + scipy), spoken to through
bench/framed.py by bench/test_bench_renditions.py: the benchmark decodes each rendition with the
project's Pillow-SIMD and sends raw RGB; the reference of a rendition (the source resized to its
size with the same LANCZOS, unencoded) is sent once and kept, with its local means and variances
(two of the five Gaussian filters of SSIM), for every rendition compared against it.

SSIM as Wang, Bovik, Sheikh and Simoncelli (2004) define it: an 11-tap Gaussian window of sigma
1.5, K1 = 0.01, K2 = 0.03, L = 255, on each of R, G and B, the mean of the map over the image less
a window's half-width at each border (where the window would reach outside), then the mean of the
three channels. On RGB rather than on luma alone, so an encoder that spends too little on chroma
(WebP and AVIF quantise it harder than JPEG at the same nominal quality) pays for it.

    PYTHONPATH=. bench/.venv-vips/bin/python bench/image_quality.py   # messages on stdin/stdout
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from bench.framed import serve

SIGMA = 1.5
TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the paper's 11 x 11 window
BORDER = 5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _blur(planes: np.ndarray) -> np.ndarray:
    """The Gaussian window over each plane of a (planes, H, W) stack: one call for all of them
    costs half what a call per plane does."""
    return ndimage.gaussian_filter(planes, (0, SIGMA, SIGMA), truncate=TRUNCATE, mode="reflect")


def _planes(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(rgb, 2, 0), dtype=np.float32)


@dataclass(frozen=True)
class Reference:
    """One reference image (3 x H x W), with what SSIM needs of it alone: its local means and
    variances."""

    planes: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @classmethod
    def of(cls, rgb: np.ndarray) -> Reference:
        planes = _planes(rgb)
        blurred = _blur(np.concatenate([planes, planes * planes]))
        means = blurred[:3]
        return cls(planes, means, blurred[3:] - means * means)


def ssim(reference: Reference, rgb: np.ndarray) -> float:
    """Mean SSIM of an RGB image (H x W x 3, uint8) against a reference of the same size."""
    if rgb.shape[:2] != reference.planes.shape[1:]:
        raise ValueError(f"size {rgb.shape[:2]} != reference {reference.planes.shape[1:]}")
    x, mu_x, var_x = reference.planes, reference.means, reference.variances
    y = _planes(rgb)
    stack = np.empty((9, *y.shape[1:]), np.float32)
    stack[:3] = y
    np.multiply(y, y, out=stack[3:6])
    np.multiply(x, y, out=stack[6:])
    blurred = _blur(stack)
    mu_y, e_yy, e_xy = blurred[:3], blurred[3:6], blurred[6:]
    # In place where it can be: a 1600 px rendition's planes are 23 MB each, and the fresh
    # temporaries of the plain formula cost as much as the filtering.
    mu_xy = mu_x * mu_y
    e_xy -= mu_xy  # the covariance
    e_xy *= 2
    e_xy += C2
    numerator = mu_xy
    numerator *= 2
    numerator += C1
    numerator *= e_xy
    mu_yy = mu_y * mu_y
    e_yy -= mu_yy  # the variance of y
    e_yy += var_x
    e_yy += C2
    denominator = mu_yy
    denominator += mu_x * mu_x
    denominator += C1
    denominator *= e_yy
    numerator /= denominator
    if min(numerator.shape[1:]) > 2 * BORDER:
        numerator = numerator[:, BORDER:-BORDER, BORDER:-BORDER]
    return float(numerator.mean(axis=(1, 2), dtype=np.float64).mean())


def _rgb(header: dict[str, Any], data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(header["height"], header["width"], 3)


def main() -> int:
    references: dict[str, Reference] = {}

    def reference(header: dict[str, Any], parts: list[bytes]) -> None:
        references[header["key"]] = Reference.of(_rgb(header, parts[0]))

    def compare(header: dict[str, Any], parts: list[bytes]) -> tuple[dict[str, Any], list]:
        score = ssim(references[header["key"]], _rgb(header, parts[0]))
        return {"tag": header.get("tag"), "ssim": score}, []

    def forget(header: dict[str, Any], parts: list[bytes]) -> None:
        for key in header["keys"]:
            references.pop(key, None)

    serve(
        {"reference": reference, "ssim": compare, "forget": forget},
        sys.stdin.buffer,
        sys.stdout.buffer,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
