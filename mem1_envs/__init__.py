"""mem1-envs: Gymnasium environments for long-horizon language agents with bounded memory.

Importing the package registers every environment id:

>>> import gymnasium as gym
>>> import mem1_envs
>>> sorted(i for i in gym.registry if i.startswith("MEM1-"))
['MEM1-MultiQA-v0', 'MEM1-WebQA-Browser-v0', 'MEM1-WebQA-v0', 'MEM1-WebShop-Browser-v0', 'MEM1-WebShop-v0']
"""

from __future__ import annotations

from gymnasium.envs.registration import register

from mem1_envs.registry import register_parts

__version__ = "0.1.0"

register(id="MEM1-MultiQA-v0", entry_point="mem1_envs.qa.env:MultiQAEnv")
register(id="MEM1-WebShop-v0", entry_point="mem1_envs.shop.text_env:WebShopTextEnv")
register(id="MEM1-WebShop-Browser-v0", entry_point="mem1_envs.shop.browser_env:WebShopBrowserEnv")
register(id="MEM1-WebQA-v0", entry_point="mem1_envs.webqa.env:WebQATextEnv")
register(id="MEM1-WebQA-Browser-v0", entry_point="mem1_envs.webqa.browser_env:WebQABrowserEnv")

# What the wrappers, agents and scripts use per env (mem1_envs.registry); imported on first use.
register_parts(
    "MEM1-MultiQA-v0",
    candidates="wrappers.candidates_multiqa:MultiQACandidates.for_env",
    scripted_agent="agents.scripted:MultiQAScriptedAgent.for_env",
)
register_parts(
    "MEM1-WebShop-v0",  # the browser env inherits these (its class derives from the text env's)
    candidates="wrappers.candidates_shop:WebShopCandidates.for_env",
    scripted_agent="agents.scripted_shop:WebShopScriptedAgent.for_env",
)
register_parts(
    "MEM1-WebQA-v0",  # the browser env inherits these (its class derives from the text env's)
    candidates="wrappers.candidates_webqa:WebQACandidates.for_env",
    scripted_agent="agents.scripted_webqa:WebQAScriptedAgent.for_env",
)
