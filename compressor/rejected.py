"""The one exception of compression: this image can never be compressed, and why."""

from __future__ import annotations

from typing import Literal

RejectReason = Literal[
    "not_an_image", "decompression_bomb", "corrupt", "unsupported", "crashes_decoder", "too_slow"
]


class ImageRejected(Exception):
    """This image can never be compressed; retrying will not help.

    ``reason`` is one of ``not_an_image``, ``decompression_bomb``, ``corrupt``,
    ``unsupported``, ``crashes_decoder`` or ``too_slow`` (these two set by the pool); ``detail``
    is free text for logs.
    """

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: RejectReason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[RejectReason, str]]:
        # The default pickling re-creates the exception from self.args (the message), which
        # would lose the reason on its way back from a pool worker.
        return (type(self), (self.reason, self.detail))
