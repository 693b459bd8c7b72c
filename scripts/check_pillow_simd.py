"""Fails loudly when plain Pillow replaced Pillow-SIMD, or when codecs are missing.

littlecms2 is LittleCMS, for ICC colour management (compressor.colour): a Pillow-SIMD built without
liblcms2-dev has none, and every tagged or CMYK image would come out in the wrong colours.
"""

import sys
from importlib import metadata

from PIL import features


def main() -> int:
    names = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
    problems = []
    if "pillow" in names:
        problems.append("plain Pillow is installed next to Pillow-SIMD")
    if "pillow-simd" not in names:
        problems.append("pillow-simd is not installed")
    for feature in ("jpg", "webp", "zlib", "littlecms2"):
        if not features.check(feature):
            problems.append(f"Pillow was built without {feature}")
    if not features.check_feature("libjpeg_turbo"):
        problems.append("Pillow is not linked against libjpeg-turbo")
    for problem in problems:
        print(f"check_pillow_simd: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
