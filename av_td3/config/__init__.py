"""Structured configs: the schema every composed run config is checked against.

Each config group has a dataclass here; the YAML files under ``conf/`` only set values. Hydra merges the
YAML into the dataclass, so an unknown key or a wrong type fails at composition with the full key in the
message. ``validate(cfg)`` then builds the dataclasses (running their ``__post_init__`` checks) so an
impossible value (a negative batch size, learning_starts past total_steps) stops the run before any
work, also naming the key.
"""

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from av_td3.config.agent import ClassicalConfig, TD3Config
from av_td3.config.clipping import ClippingConfig, NetClipConfig
from av_td3.config.env import CarlaEnvConfig, GymEnvConfig, HighwayEnvConfig, RewardConfig
from av_td3.config.errors import ConfigError
from av_td3.config.exploration import ExplorationConfig
from av_td3.config.root import Config, ScenarioConfig, TrainerConfig, register_configs

__all__ = [
    "CarlaEnvConfig", "ClassicalConfig", "ClippingConfig", "Config", "ConfigError", "ExplorationConfig",
    "GymEnvConfig",
    "HighwayEnvConfig", "NetClipConfig", "RewardConfig", "ScenarioConfig", "TD3Config",
    "TrainerConfig", "register_configs", "validate",
]


def validate(cfg: DictConfig) -> Config:
    """Type- and value-check a composed config; returns it as dataclasses.

    Raises ConfigError with a message naming the offending key.
    """
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:  # missing values, wrong types caught late
        raise ConfigError(str(e)) from None
