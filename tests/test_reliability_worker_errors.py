"""A worker error (simulated out of memory) fails only the ticks it hit: retried, logged, counted; the
stream's transcript is whole. In-process server (real tiny.en worker), real loopback client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import connect

from benchmarks.data import Clip
from benchmarks.wer import word_error_rate
from model.audio import SAMPLE_RATE, load_audio
from streamer.app import build_server
from streamer.config import config_from_mapping
from streamer.engine.worker import BatchResult, ModelWorker
from streamer.stream.tick import TickRequest

from .conftest import clip_by_id

pytestmark = pytest.mark.slow


class FlakyWorker(ModelWorker):
    """The real worker, but batches number 2 and 3 fail as a CUDA out-of-memory would."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.submitted = 0

    def submit(self, requests: Sequence[TickRequest]) -> Future[BatchResult]:
        self.submitted += 1
        if self.submitted in (2, 3):
            failed: Future[BatchResult] = Future()
            failed.set_exception(RuntimeError("CUDA out of memory (simulated)"))
            return failed
        return super().submit(requests)


def test_failed_batches_are_retried_without_losing_text(tmp_path, shared_data: list[Clip], caplog) -> None:
    clip = clip_by_id(shared_data, "ls_1221-135766-0001")
    audio = load_audio(clip.path)
    config = config_from_mapping({"server": {"port": 0}, "model": {"model": "tiny.en", "device": "cpu"}, "journal": {"directory": str(tmp_path)}})

    async def scenario() -> tuple[str, int | None, float]:
        worker = FlakyWorker(config.model, config.stream)
        worker.start()
        server = build_server(config, worker)
        host, port = await server.start()
        try:
            async with connect(f"ws://{host}:{port}/v1/stream", max_size=None) as ws:
                await ws.send(msgpack.packb({"type": "start"}))
                pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
                for offset in range(0, len(pcm), SAMPLE_RATE // 5):
                    await ws.send(msgpack.packb({"type": "audio", "data": pcm[offset : offset + SAMPLE_RATE // 5].tobytes()}))
                    await asyncio.sleep(0.05)
                await ws.send(msgpack.packb({"type": "stop"}))
                messages = [msgpack.unpackb(f) async for f in ws]
                code = ws.close_code
            errors = server.metrics.worker_errors_total.labels("RuntimeError")._value.get()
        finally:
            await server.shutdown()
        assert messages[-1]["type"] == "end", messages[-3:]
        return "".join(m["text"] for m in messages if m["type"] == "stable"), code, errors

    with caplog.at_level(logging.ERROR, logger="streamer.engine.scheduler"):
        text, code, errors = asyncio.run(scenario())
    assert code == 1000
    assert errors == 2
    assert sum("CUDA out of memory" in r.getMessage() or (r.exc_info and "CUDA out of memory" in str(r.exc_info[1])) for r in caplog.records) == 2
    assert word_error_rate([clip.text], [text]) <= 0.15, text
