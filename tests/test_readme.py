"""The README's Python examples run when copied alone: each top-level block imports what it uses."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _top_level_python_blocks() -> list[str]:
    # Blocks fenced at column 0; indented ones are fragments of a numbered step.
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_every_top_level_python_block_imports_gymnasium_and_the_env_ids():
    blocks = _top_level_python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        if "gym.make(" in block:
            assert re.search(r"^import gymnasium as gym\b", block, flags=re.M), block
            assert re.search(r"^import (gymnasium as gym, )?mem1_envs\b", block, flags=re.M), block


def test_no_example_calls_action_masks_on_a_wrapper_stack():
    text = README.read_text(encoding="utf-8")
    assert "reads env.action_masks()" not in text
    assert 'env.get_wrapper_attr("action_masks")()' in text
