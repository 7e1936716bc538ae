"""Model resolution order and the error a missing model gives."""

from __future__ import annotations

import pytest

from configs.schema import ModelConfig
from common.model_source import ModelNotAvailableError, resolve_model_path

ENGINE = {"max_model_len": 128}


def model(source: str, substitute: str | None = None) -> ModelConfig:
    return ModelConfig(name="Qwen/Qwen3-0.6B", deployment_name="TextModel", modality="text",
                       source=source, local_substitute=substitute, engine=ENGINE)


def checkpoint(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    # Point the HF cache at an empty folder so the machine's own cache cannot change the result.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_local_directory_is_used(tmp_path, empty_hf_cache):
    ckpt = checkpoint(tmp_path / "ckpt")
    assert resolve_model_path(model(str(ckpt))) == str(ckpt)


def test_directory_without_config_is_a_clear_error(tmp_path, empty_hf_cache):
    (tmp_path / "broken").mkdir()
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        resolve_model_path(model(str(tmp_path / "broken")))


def test_substitute_when_hub_model_not_cached(tmp_path, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sub = checkpoint(tmp_path / "sub")
    assert resolve_model_path(model("Qwen/Qwen3-0.6B", str(sub))) == str(sub)


def test_cached_hub_snapshot_wins_over_substitute(tmp_path, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = tmp_path / "hf-cache" / "models--Qwen--Qwen3-0.6B" / "snapshots" / "abc123"
    checkpoint(snapshot)
    (snapshot / "model.safetensors").write_bytes(b"x")
    refs = tmp_path / "hf-cache" / "models--Qwen--Qwen3-0.6B" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    sub = checkpoint(tmp_path / "sub")
    assert resolve_model_path(model("Qwen/Qwen3-0.6B", str(sub))) == str(snapshot)


def test_offline_and_missing_names_the_model_and_the_fix(tmp_path, empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model_path(model("Qwen/Qwen3-0.6B", str(tmp_path / "not-built")))
    message = str(err.value)
    assert "Qwen/Qwen3-0.6B" in message
    assert "huggingface-cli download" in message and "prepare_models.py" in message


def test_online_hub_id_is_left_to_vllm(empty_hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert resolve_model_path(model("Qwen/Qwen3-0.6B")) == "Qwen/Qwen3-0.6B"


def test_nonsense_source_is_rejected(empty_hf_cache):
    with pytest.raises(ModelNotAvailableError, match="neither an existing directory"):
        resolve_model_path(model("./does/not/exist"))
