"""Driving environments. Every driving env (``highway`` embedded, ``carla``) keeps the contract in
``contract.py`` and scores steps with ``reward.py``, so an agent or reward change moves between them
untouched."""
