"""Train an LLM policy with masked PPO (or GRPO/GiGPO) on a MEM1 environment.

    python scripts/train_ppo.py --config tiny-cpu --total-steps 20 --out-dir runs/tiny
    python scripts/train_ppo.py --config tiny-cpu --policy runs/sft           # from train_sft.py's --out-dir
    torchrun --nproc_per_node=2 scripts/train_ppo.py --config tiny-cpu       # DDP (gloo on CPU)
    torchrun --nproc_per_node=8 scripts/train_ppo.py --config qwen2.5-7b --model /models/Qwen2.5-7B-Instruct

Every field of ``agents.ppo.config.PPOConfig`` is a flag (``--kl-mode k3_loss``; ``--help`` shows
each field's documentation and default); ``--resume`` continues from the latest sharded
checkpoint in ``<out-dir>/checkpoints`` (or an old ``<out-dir>/checkpoint.pt``) exactly where it
stopped. ``--policy`` and ``--model`` are local folders: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import os
import sys
import textwrap
import typing
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.ppo.config import PRESETS, PPOConfig, preset
from mem1_envs.validation import check_folder


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of the dataclass ``cls``, on one line.

    Python keeps no attribute docstrings at run time, so they are read from the source.

    >>> field_docs(PPOConfig)["gamma"]
    'Discount (MEM1: 1).'
    """
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(following.value.value).replace("``", "").split())
    return docs


def _show(value: Any) -> str:
    """A value as it is written on the command line."""
    if isinstance(value, tuple):  # env_kwargs
        return ",".join(f"{key}={item}" for key, item in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _parse_bool(text: str) -> bool:
    if text.lower() not in _BOOLS:
        raise ValueError(text)
    return _BOOLS[text.lower()]


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_PARSERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "bool": (_parse_bool, "true or false"),
    "str": (str, "a string"),
}


def _parse_pairs(text: str) -> tuple[tuple[str, Any], ...]:
    """``"world=small,num_objectives=2"`` -> ``(("world", "small"), ("num_objectives", 2))``."""
    pairs = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(text)
        try:
            pairs.append((key.strip(), ast.literal_eval(value)))
        except (ValueError, SyntaxError):
            pairs.append((key.strip(), value))
    return tuple(pairs)


def _flag_type(annotation: Any) -> tuple[Callable[[str], Any], str]:
    """The argparse ``type=`` and metavar of a field: parses its text, ``None`` where allowed."""
    kind = str(annotation)
    optional = "None" in kind
    if "tuple" in kind:
        parse, what, metavar = _parse_pairs, "key=value[,key=value...]", "KEY=VALUE,..."
    else:
        name = next(name for name in ("bool", "int", "float", "str") if name in kind)
        (parse, what), metavar = _PARSERS[name], name.upper()

    def convert(text: str) -> Any:
        if optional and text == "None":
            return None
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {what}{' or None' if optional else ''}, got {text!r}"
            ) from None

    return convert, metavar + ("|None" if optional else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="tiny-cpu", choices=sorted(PRESETS), help="preset to start from")
    parser.add_argument(
        "--policy",
        default=None,
        help="initial policy folder, e.g. runs/sft from train_sft.py (overrides --model)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from <out-dir>/checkpoints/latest")
    hints = typing.get_type_hints(PPOConfig)
    docs = field_docs(PPOConfig)
    flags = parser.add_argument_group("PPOConfig fields (agents/ppo/config.py)")
    for field in dataclasses.fields(PPOConfig):
        default = getattr(PRESETS["tiny-cpu"], field.name)
        others = "".join(
            f"; {name}: {_show(getattr(config, field.name))}"
            for name, config in PRESETS.items()
            if name != "tiny-cpu" and getattr(config, field.name) != default
        )
        help_text = f"{docs.get(field.name, '')} [default: {_show(default)}{others}]"
        convert, metavar = _flag_type(hints[field.name])
        flags.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            default=argparse.SUPPRESS,  # absent unless given: the preset's value stays
            type=convert,
            metavar=metavar,
            help=help_text.replace("%", "%%"),
        )
    return parser


def config_from_args(args: argparse.Namespace) -> PPOConfig:
    overrides = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(PPOConfig) if hasattr(args, f.name)
    }
    return preset(args.config, **overrides)


def check_model_folders(args: argparse.Namespace, config: PPOConfig) -> None:
    """A policy or model that is not a folder is named here (nothing is fetched from a hub)."""
    if args.policy not in (None, "tiny"):  # "tiny": the trainer builds the default tiny model
        check_folder("--policy", args.policy)
    elif args.policy is None and config.model not in (None, "tiny"):
        check_folder("--model", config.model)
    if config.critic == "separate" and config.critic_model is not None:
        check_folder("--critic-model", config.critic_model)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        check_model_folders(args, config)
    except (TypeError, ValueError) as error:
        parser.error(str(error))  # one line and exit 2, as for a malformed flag
    from agents.ppo.trainer import PPOTrainer

    trainer = PPOTrainer(config, policy_path=args.policy)
    history = trainer.train(resume=args.resume)
    trainer.save_policy()
    if trainer.is_main and history:
        last = history[-1]
        print(
            f"step {trainer.step}: reward {last['reward']:.3f} kl {last['kl']:.4f} "
            f"logprob_gap {last['logprob_gap']:.2e} tokens/s {last['tokens_per_s']:.0f}"
        )
    trainer.close()
    return history


if __name__ == "__main__":
    main()
