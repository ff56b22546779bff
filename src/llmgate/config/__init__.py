"""Configuration: YAML + environment, validated into frozen ``Settings``."""

from llmgate.config.detect import how_to_enable
from llmgate.config.loader import (
    ConfigError,
    config_path_from_environment,
    load_settings,
    started_at_from_environment,
)
from llmgate.config.settings import (
    DeploymentSettings,
    MockFailure,
    MockSettings,
    ModelGroupSettings,
    PriceOverride,
    ProviderSettings,
    Settings,
    Timeouts,
)

__all__ = [
    "ConfigError",
    "DeploymentSettings",
    "MockFailure",
    "MockSettings",
    "ModelGroupSettings",
    "PriceOverride",
    "ProviderSettings",
    "Settings",
    "Timeouts",
    "config_path_from_environment",
    "how_to_enable",
    "load_settings",
    "started_at_from_environment",
]
