"""The Serve application builder named by the configs: `import_path: router.app:build_app`.

`serve run` / `serve deploy` call `build_app(args)` with the application's `args` from the config
file; the args are validated into an `AppConfig` (unknown keys and bad values fail the deploy with
pydantic's message), and the deployment graph is: Ingress -> one ModelDeployment per model.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from configs.schema import AppConfig
from model_server.engine_protocol import ChatEngine
from model_server.replica import ModelDeployment
from router.ingress import Ingress


def build_application(
    config: AppConfig, engine_cls: type[ChatEngine] | None = None
) -> Application:
    """Bind the deployment graph for `config`. Tests pass `engine_cls` to serve a fake engine."""
    bound = {
        model.modality: ModelDeployment.options(name=model.deployment_name).bind(
            model, engine_cls
        )
        for model in config.models
    }
    return Ingress.options(name=config.ingress_deployment_name).bind(
        config, text_model=bound["text"], vision_model=bound.get("vision")
    )


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder entry point."""
    return build_application(AppConfig.model_validate(args))
