"""Agents: TD3 (DDPG is TD3 with three switches off), the classical controller, and their networks."""
