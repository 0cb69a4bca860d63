class ConfigError(ValueError):
    """A config value is impossible; the message names the key (``trainer.learning_starts``)."""


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")
