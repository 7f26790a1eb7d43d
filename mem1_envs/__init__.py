"""mem1-envs: Gymnasium environments for long-horizon language agents with bounded memory.

Importing the package registers every environment id:

>>> import gymnasium as gym
>>> import mem1_envs
>>> sorted(i for i in gym.registry if i.startswith("MEM1-"))
['MEM1-MultiQA-v0', 'MEM1-WebShop-Browser-v0', 'MEM1-WebShop-v0']
"""

from __future__ import annotations

from gymnasium.envs.registration import register

__version__ = "0.1.0"

register(id="MEM1-MultiQA-v0", entry_point="mem1_envs.qa.env:MultiQAEnv")
register(id="MEM1-WebShop-v0", entry_point="mem1_envs.shop.text_env:WebShopTextEnv")
register(id="MEM1-WebShop-Browser-v0", entry_point="mem1_envs.shop.browser_env:WebShopBrowserEnv")
