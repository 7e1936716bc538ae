"""Where a model's weights come from: a local checkpoint, the local Hugging Face cache, or the hub.

Resolution order for a config's `source`:
1. a local directory (absolute, or relative to the project root) holding a `config.json`;
2. a hub id whose snapshot is already in the local Hugging Face cache (works offline);
3. the config's `local_substitute` directory (offline laptops and CI; scripts/prepare_models.py);
4. the hub id itself, for vLLM to download, unless the machine is offline (HF_HUB_OFFLINE=1).

Anything else is a `ModelNotAvailableError` naming the model and the two ways to get it, raised
when the replica starts, instead of a stack trace from deep inside vLLM minutes later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from configs.schema import PROJECT_ROOT, ModelConfig

logger = logging.getLogger("cs_assistant.model_source")

PREPARE_COMMAND = "python scripts/prepare_models.py"


class ModelNotAvailableError(RuntimeError):
    """The configured model cannot be loaded on this machine; the message says how to fix it."""


def _local_dir(path_text: str) -> Path | None:
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    return path if path.is_dir() else None


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def _cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of `repo_id` if its config and weights are present, else None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return None
    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss (not cached, partial) means "not available"
        return None
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    return path if (path / "config.json").exists() and has_weights else None


def resolve_model_path(model: ModelConfig) -> str:
    """The path or hub id vLLM should load for `model` (see the module docstring for the order)."""
    local = _local_dir(model.source)
    if local is not None:
        if not (local / "config.json").exists():
            raise ModelNotAvailableError(
                f"Model {model.name!r}: directory {local} has no config.json, so it is not a "
                f"checkpoint. Rebuild it with `{PREPARE_COMMAND} --force`."
            )
        return str(local)

    if not _looks_like_hub_id(model.source):
        raise ModelNotAvailableError(
            f"Model {model.name!r}: source {model.source!r} is neither an existing directory "
            f"nor a Hugging Face model id (org/name). Run `{PREPARE_COMMAND}` for the local models."
        )

    cached = _cached_snapshot(model.source)
    if cached is not None:
        return str(cached)

    if model.local_substitute:
        substitute = _local_dir(model.local_substitute)
        if substitute is not None and (substitute / "config.json").exists():
            logger.warning(
                "Model %s: weights not in the local Hugging Face cache; serving the local "
                "substitute %s instead", model.source, substitute,
            )
            return str(substitute)

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        substitute_hint = (
            f" or build its local substitute with `{PREPARE_COMMAND}`"
            if model.local_substitute else ""
        )
        raise ModelNotAvailableError(
            f"Model {model.name!r} ({model.source}) is not in the local Hugging Face cache and "
            f"this machine is offline (HF_HUB_OFFLINE=1). Download it where there is network "
            f"(`huggingface-cli download {model.source}`){substitute_hint}."
        )
    # Online: vLLM downloads from the hub on first start (the production path).
    return model.source
