"""The reference order service (real HTTP, real SQLite) for the order look-up's unit tests, and
the local config pointed at it with secrets in a test directory."""

from __future__ import annotations

import pytest

from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config
from tests.conftest import LOCAL_CONFIG
from tests.order_stack import OrderServiceThread, point_shops_at


ORDER_TIMEOUT_S = 1.5


@pytest.fixture(scope="session")
def order_service(tmp_path_factory):
    service = OrderServiceThread(tmp_path_factory.mktemp("orders") / "orders.sqlite")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def ordering(tmp_path_factory, order_service):
    """(the app config whose shops look orders up in `order_service`, secret file by shop)."""
    raw = load_serve_config(LOCAL_CONFIG)
    # 1.5 s: the service answers in milliseconds, but shares this process's GIL with the test
    # and the ingress; 0.5 s timed out a healthy call once while a stack loaded both cores.
    secrets = point_shops_at(raw, order_service.url, tmp_path_factory.mktemp("secrets"),
                             timeout_s=ORDER_TIMEOUT_S)
    return app_config_from_serve_config(raw, APP_NAME), secrets


@pytest.fixture
def healthy_orders(order_service):
    order_service.set_fault("none")
    yield order_service
    order_service.set_fault("none")
