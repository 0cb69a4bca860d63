"""The CARLA 0.9.16 driving env (``env=carla``).

Importing this package does not import ``carla``: the exceptions below are what a trainer catches, and
they must exist where the wheel does not. ``CarlaDrivingEnv`` lives in ``av_td3.envs.carla.env``.
"""

from av_td3.envs.carla.errors import (CarlaConnectionError, CarlaEpisodeLost, CarlaError,
                                      CarlaNotInstalledError, SensorTimeout)

__all__ = ["CarlaConnectionError", "CarlaEpisodeLost", "CarlaError", "CarlaNotInstalledError",
           "SensorTimeout"]
