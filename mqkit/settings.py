"""Configuration from the environment (MQKIT_*), read with pydantic-settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mqkit.paths import default_database


def default_url() -> str:
    """The embedded default: a sqlite file in the user's data directory."""
    return f"sqlite:///{default_database()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MQKIT_", extra="ignore")

    url: str = Field(default_factory=default_url, description="Broker URL")


def configured_url(url: str | None = None) -> str:
    """`url` if given, else MQKIT_URL, else the embedded default."""
    return url or Settings().url
