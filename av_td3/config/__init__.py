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
from av_td3.config.env import CarlaEnvConfig, DrivingEnvConfig, GymEnvConfig, HighwayEnvConfig, RewardConfig
from av_td3.config.errors import ConfigError
from av_td3.config.exploration import ExplorationConfig
from av_td3.config.root import Config, ScenarioConfig, TrainerConfig, register_configs

__all__ = [
    "CarlaEnvConfig", "ClassicalConfig", "ClippingConfig", "Config", "ConfigError", "DrivingEnvConfig",
    "ExplorationConfig", "GymEnvConfig", "HighwayEnvConfig", "NetClipConfig", "RewardConfig", "ScenarioConfig",
    "TD3Config", "TrainerConfig", "register_configs", "validate",
]


def validate(cfg: DictConfig) -> Config:
    """Type- and value-check a composed config; returns it as dataclasses.

    Raises ConfigError with a message naming the offending key.
    """
    _reject_unknown_keys(cfg, "")
    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:  # missing values, wrong types caught late
        raise ConfigError(str(e)) from None


def _reject_unknown_keys(node: DictConfig, prefix: str) -> None:
    """Keys a schema does not declare, under any node typed by a dataclass. Hydra stops ``agent.bogus=1``
    itself; ``+agent.bogus=1`` (which its message suggests) gets past it into a node typed ``Any`` in
    the root schema, and would only fail when the agent is built."""
    import dataclasses

    kind = OmegaConf.get_type(node)
    declared = ({f.name for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None)
    for key in node.keys():
        if declared is not None and key not in declared:
            raise ConfigError(f"Key '{key}' is not in struct\n    full_key: {prefix}{key}\n"
                              f"    object_type={kind.__name__}")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _reject_unknown_keys(child, f"{prefix}{key}.")
