"""Reference agents (scripted, LLM policy) and the masked-PPO trainer."""

from agents.base import Agent

__all__ = ["Agent"]
