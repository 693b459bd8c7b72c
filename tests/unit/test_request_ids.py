"""Generated request ids: unique within a process (a counter) and across processes (a random
part drawn again in every forked child, as run_api.py's workers are)."""

from __future__ import annotations

import os
import re

from server.middleware import _request_ids


def test_ids_are_32_hex_digits_and_never_repeat_within_a_process():
    ids = [_request_ids.next() for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_its_own_random_part():
    parent = _request_ids.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave without running pytest's exit
        os.write(write, _request_ids.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:16] != parent[:16]
