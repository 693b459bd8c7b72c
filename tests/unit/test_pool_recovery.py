"""A compression process killed mid-job (as the OOM killer would) breaks the executor; the pool
replaces it and the retried image succeeds."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from compressor.compress import CompressOptions
from compressor.pool import CompressionPool
from tests.imagegen import photo_jpeg


async def test_a_killed_child_is_replaced_and_the_retry_succeeds():
    pool = CompressionPool(processes=1, max_pixels=50_000_000)
    try:
        pool.warm_up()
        options = CompressOptions(max_dimension=64)
        source = photo_jpeg(2000, 1500)
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            await pool.compress(source, options)
        assert pool.rebuilds == 1
        result = await pool.compress(source, options)
        assert max(result.width, result.height) == 64
        assert pool.pids() != [pid]
    finally:
        pool.shutdown()
