"""Messages over a pipe between the benchmark (the project's .venv) and its helper processes.

The helpers run under other virtualenvs (bench/.venv-vips: libvips, numpy), so they share no
objects with the benchmark, only bytes: each message is one JSON line, whose ``"payload"`` lists
the lengths of the binary parts that follow it. Standard library only: both sides import it.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Sequence
from queue import Queue
from typing import IO, Any

Message = tuple[dict[str, Any], list[bytes]]


def write(stream: IO[bytes], header: dict[str, Any], parts: Sequence[bytes] = ()) -> None:
    line = json.dumps({**header, "payload": [len(part) for part in parts]}).encode()
    stream.write(line + b"\n")
    for part in parts:
        stream.write(part)
    stream.flush()


def read(stream: IO[bytes]) -> Message | None:
    """The next message, or None at the end of the stream."""
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    parts = [_read_exactly(stream, length) for length in header.pop("payload", [])]
    return header, parts


def _read_exactly(stream: IO[bytes], length: int) -> bytes:
    data = stream.read(length)
    if len(data) != length:
        raise EOFError(f"stream ended {length - len(data)} bytes into a part")
    return data


class Helper:
    """A helper process spoken to in messages: ``send`` queues a request and returns (a thread
    writes it, so the benchmark renders the next image while the helper still measures the last),
    ``receive`` returns the answers in order (a thread reads them as they come, so no pipe is
    ever full on either side)."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: str) -> None:
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd
        )
        self._answers: Queue[Message | None] = Queue()
        # Bounded: a queued request may hold a decoded 1600 px image (5.8 MB).
        self._requests: Queue[Message | None] = Queue(maxsize=16)
        self._reader = threading.Thread(target=self._read_all, name="helper-reader", daemon=True)
        self._writer = threading.Thread(target=self._write_all, name="helper-writer", daemon=True)
        self._reader.start()
        self._writer.start()

    def _read_all(self) -> None:
        assert self.process.stdout is not None
        while (message := read(self.process.stdout)) is not None:
            self._answers.put(message)
        self._answers.put(None)

    def _write_all(self) -> None:
        assert self.process.stdin is not None
        try:
            while (message := self._requests.get()) is not None:
                write(self.process.stdin, *message)
        except BrokenPipeError:
            pass  # the helper died: receive() reports it
        finally:
            self.process.stdin.close()  # the helper's loop ends at the end of its input

    def send(self, header: dict[str, Any], parts: Sequence[bytes] = ()) -> None:
        # A timeout, not a hang, if the helper died with the queue full.
        self._requests.put((header, list(parts)), timeout=600)

    def receive(self, timeout_s: float = 600.0) -> Message:
        message = self._answers.get(timeout=timeout_s)
        if message is None:
            raise RuntimeError(f"helper {self.process.args!r} exited: {self.process.wait()}")
        header, parts = message
        if "error" in header:
            raise RuntimeError(f"helper {self.process.args!r}: {header['error']}")
        return header, parts

    def call(self, header: dict[str, Any], parts: Sequence[bytes] = ()) -> Message:
        self.send(header, parts)
        return self.receive()

    def close(self) -> None:
        self._requests.put(None)
        self._writer.join(timeout=30)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(handlers: dict[str, Any], stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """A helper's loop: each message's ``op`` names its handler, (header, parts) -> answer
    (header, parts), or None for no answer. A handler's exception answers as an error."""
    while (message := read(stdin)) is not None:
        header, parts = message
        try:
            answer = handlers[header["op"]](header, parts)
        except Exception as exc:  # reported to the benchmark, which fails
            write(stdout, {"error": f"{header.get('op')}: {exc!r}"})
            continue
        if answer is not None:
            write(stdout, *answer)
