"""The web dashboard and REST API (``optml serve``): FastAPI over :mod:`optml.service`.

Needs the ``web`` extra (fastapi, uvicorn, jinja2, plotly, python-multipart); ``import optml``
never imports it.
"""

from __future__ import annotations

from optml.server._app import create_app, load_token

__all__ = ["create_app", "load_token"]
