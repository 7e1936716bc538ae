"""ModelDeployment's logic with an injected fake engine (the class itself, no Ray cluster)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from ray.serve._private.logging_utils import ServeFormatter

from model_server.engine_protocol import (
    EngineRequest,
    EngineUnavailableError,
    ReplicaAccepted,
    SamplingOptions,
)
from model_server.replica import ENGINE_WATCH_PERIOD_S, ModelDeployment
from common.model_source import ModelNotAvailableError
from loadtests.replica_logs import accepting_replicas
from tests.fakes import FakeChatEngine
from tests.conftest import model_for

DeploymentClass = ModelDeployment.func_or_class


def text_model(local_config, tmp_path):
    """The local text model, its weights a checkpoint directory in `tmp_path`."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(exist_ok=True)
    (ckpt / "config.json").write_text("{}")
    return model_for(local_config, "text").model_copy(update={"source": str(ckpt)})


def make(local_config, tmp_path, engine_cls=FakeChatEngine):
    replica = DeploymentClass.__new__(DeploymentClass)
    asyncio.run(replica.__init__(text_model(local_config, tmp_path), engine_cls))
    return replica


def test_streams_engine_chunks_and_reports_health(local_config, tmp_path):
    replica = make(local_config, tmp_path)
    engine = replica._engine
    assert engine.started and engine.model_path.endswith("ckpt")
    request = EngineRequest("r1", [{"role": "user", "content": "hi"}], SamplingOptions(16, 0.0, 1.0))

    async def run():
        return [c async for c in replica.chat(request)]

    accepted, *chunks = asyncio.run(run())
    assert isinstance(accepted, ReplicaAccepted)  # sent before the engine produces anything
    assert "".join(c.text for c in chunks) == "Your order ships today."
    asyncio.run(replica.check_health())
    engine.behaviour.healthy = False
    with pytest.raises(RuntimeError, match="dead"):
        asyncio.run(replica.check_health())
    asyncio.run(replica.__del__())
    assert engine.shut_down


def test_a_replica_logs_each_request_it_takes_before_any_output(local_config, tmp_path,
                                                                caplog):
    """The line that ties a request to the replica that took it (loadtests/replica_logs.py):
    written with the call's first item, so a replica killed mid-answer has already logged it."""
    replica = make(local_config, tmp_path)
    request = EngineRequest("loadtest-7", [{"role": "user", "content": "hi"}],
                            SamplingOptions(16, 0.0, 1.0))

    async def first_item():
        stream = replica.chat(request)
        with caplog.at_level(logging.INFO, logger="cs_assistant"):
            accepted = await anext(stream)
        await stream.aclose()
        return accepted

    assert isinstance(asyncio.run(first_item()), ReplicaAccepted)
    asyncio.run(replica.__del__())
    # Written as Serve's replica log handler writes it (its context adds the request id).
    formatter = ServeFormatter("default_TextModel", "ab12cd34")
    lines = []
    for record in caplog.records:
        record.request_id = "loadtest-7"
        lines.append(formatter.format(record) + "\n")
    node_logs = tmp_path / "logs"
    (node_logs / "serve").mkdir(parents=True)
    (node_logs / "serve" / "replica_default_TextModel_ab12cd34.log").write_text("".join(lines))
    assert accepting_replicas([node_logs], "TextModel") == {"loadtest-7": {"ab12cd34"}}


def test_missing_model_fails_before_the_engine_is_built(local_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    model = model_for(local_config, "text").model_copy(update={"local_substitute": str(tmp_path / "none")})
    replica = DeploymentClass.__new__(DeploymentClass)
    built = []

    class Recording(FakeChatEngine):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    with pytest.raises(ModelNotAvailableError, match="Qwen/Qwen3-0.6B"):
        asyncio.run(replica.__init__(model, Recording))
    assert not built


def test_a_replica_whose_engine_dies_leaves_at_once_and_not_before(local_config, tmp_path):
    model = text_model(local_config, tmp_path)
    replica = DeploymentClass.__new__(DeploymentClass)
    exits: list[float] = []

    async def run():
        loop = asyncio.get_running_loop()
        await replica.__init__(model, FakeChatEngine, lambda: exits.append(loop.time()))
        await asyncio.sleep(3 * ENGINE_WATCH_PERIOD_S)
        assert exits == []  # a live engine keeps its replica
        died = loop.time()
        replica._engine.behaviour.dead = True
        await asyncio.sleep(3 * ENGINE_WATCH_PERIOD_S)
        await replica.__del__()
        return died

    died = asyncio.run(run())
    assert len(exits) == 1 and exits[0] - died <= 2 * ENGINE_WATCH_PERIOD_S


def test_a_request_that_meets_a_dead_engine_ends_the_replica_without_waiting(local_config,
                                                                           tmp_path):
    """Between two looks of the watchdog, a request that finds the engine dead ends the
    replica itself (once), so that routers drop it on their next call to it."""
    model = text_model(local_config, tmp_path)
    replica = DeploymentClass.__new__(DeploymentClass)
    exits: list[str] = []
    request = EngineRequest("r1", [{"role": "user", "content": "hi"}],
                            SamplingOptions(16, 0.0, 1.0))

    async def run():
        await replica.__init__(model, FakeChatEngine, lambda: exits.append("exit"))
        replica._watch.cancel()  # only the request path may notice here
        replica._engine.behaviour.dead = True
        for _ in range(2):  # a second request does not end it twice
            stream = replica.chat(request)
            assert isinstance(await anext(stream), ReplicaAccepted)
            with pytest.raises(EngineUnavailableError):
                await anext(stream)
        await replica.__del__()

    asyncio.run(run())
    assert exits == ["exit"]
