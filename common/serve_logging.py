"""The application's log lines in Serve's replica logs.

Every module logs under the `cs_assistant` logger tree, so the code runs and logs the same
outside Ray (unit tests, tools). Inside a Serve replica only Serve's own logger (`ray.serve`) has
handlers: they write the replica's log file and the console with the request id of the request
being served. Without this, INFO lines of ours (request id ↔ key id ↔ shop) went nowhere, and
warnings reached stderr without the request id.
"""

from __future__ import annotations

import logging

APP_LOGGER = "cs_assistant"


def use_serve_logging(level: int = logging.INFO) -> None:
    """Send the `cs_assistant` logger tree to Serve's handlers (call once per replica)."""
    app, serve = logging.getLogger(APP_LOGGER), logging.getLogger("ray.serve")
    app.setLevel(level)
    for handler in serve.handlers:
        if handler not in app.handlers:
            app.addHandler(handler)
    app.propagate = not serve.handlers  # no handlers: leave it to the root logger
