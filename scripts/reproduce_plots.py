"""PNG curves of a ``scripts/reproduce_mem1.py`` run: SFT loss, PPO health, the N-scaling table.

Reads the run's JSONL logs and ``results.json`` (``reproduce_mem1.py --plot-only`` redraws them).
"""

from __future__ import annotations

import json
import os


def plot(out: str, results: dict) -> list[str]:
    """PNG curves from the JSONL logs and ``results``; [] when matplotlib is not installed."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install mem1-envs[plot])")
        return []
    folder = os.path.join(out, "plots")
    os.makedirs(folder, exist_ok=True)
    written = []

    def rows(path: str) -> list[dict]:
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    sft_rows = rows(os.path.join(out, "sft-log", "metrics.jsonl"))
    if sft_rows:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([r["step"] for r in sft_rows], [r["loss"] for r in sft_rows], lw=0.8)
        ax.set(xlabel="SFT step", ylabel="NLL per generated token", yscale="log", title="SFT (1 objective)")
        points = [r for r in sft_rows if "heldout_em_greedy" in r]
        if points:
            twin = ax.twinx()
            twin.plot([r["step"] for r in points], [r["heldout_em_greedy"] for r in points], "o-", color="C1")
            twin.set(ylabel="held-out EM (greedy)", ylim=(-0.02, 1.0))
        fig.tight_layout()
        written.append(os.path.join(folder, "sft_loss.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    ppo_rows = rows(os.path.join(out, "ppo", "metrics.jsonl"))
    if ppo_rows and "ppo" in results:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
        steps = [r["step"] for r in ppo_rows]
        axes[0].plot(steps, [r["reward"] for r in ppo_rows], label="train reward", lw=0.8)
        curve = results["ppo"]["curve"]
        axes[0].plot(
            [c["ppo_step"] for c in curve],
            [c["greedy_em"] for c in curve],
            "o-",
            label="held-out EM (greedy)",
        )
        axes[0].plot(
            [c["ppo_step"] for c in curve],
            [c["sampled_em"] for c in curve],
            "s-",
            label="held-out EM (sampled)",
        )
        axes[0].set(xlabel="PPO step", title="reward and held-out EM")
        axes[0].legend(fontsize=7)
        axes[1].plot(steps, [r["kl"] for r in ppo_rows], label="KL to SFT (k1)")
        axes[1].plot(steps, [r["logprob_gap"] for r in ppo_rows], label="|rollout - train| log-prob")
        axes[1].set_yscale("symlog", linthresh=1e-7)  # k1 KL can be negative; the gap is ~1e-7
        axes[1].set(xlabel="PPO step", title="KL and log-prob gap (per token)")
        axes[1].legend(fontsize=7)
        axes[2].plot(steps, [r["entropy"] for r in ppo_rows])
        axes[2].set(xlabel="PPO step", title="entropy per generated token")
        fig.tight_layout()
        written.append(os.path.join(folder, "ppo.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if "scale" in results:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for memory, marker in (("mem1", "o-"), ("full", "s--")):
            table = results["scale"].get(memory)
            if not table:
                continue
            ns = sorted(int(n) for n in table)
            axes[0].plot(ns, [table[str(n)]["em_per_objective"] for n in ns], marker, label=memory)
            axes[1].plot(ns, [table[str(n)]["peak_context_tokens"] for n in ns], marker, label=memory)
        trained = ", ".join(str(n) for n in results.get("recipe", {}).get("scale_train_objectives", [2]))
        axes[0].set(
            xlabel="objectives N", ylabel="EM per objective", xscale="log", title=f"trained at N = {trained}"
        )
        axes[1].set(
            xlabel="objectives N", ylabel="peak context tokens", xscale="log", yscale="log", title="memory"
        )
        for ax in axes:
            ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
            ax.minorticks_off()
            ax.legend()
        # Peaks of a few hundred tokens sit inside one decade: plain numbers, not powers of 10.
        axes[1].yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        fig.tight_layout()
        written.append(os.path.join(folder, "scaling.png"))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
