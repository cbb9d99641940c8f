"""ASGI entry point for servers other than `ledgerhub serve`: `uvicorn --factory hub.app:create`.

A factory rather than a module-level app, so importing this module never opens a ledger or a database."""

from __future__ import annotations

from fastapi import FastAPI

from hub.api.app import create_app
from hub.config import load_settings


def create() -> FastAPI:
    """The hub app with the settings from the environment (LEDGERHUB_*) or LEDGERHUB_CONFIG."""
    return create_app(load_settings())
