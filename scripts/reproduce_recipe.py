"""Every knob of ``scripts/reproduce_mem1.py`` in one place: the ``Recipe`` and its ``--quick`` changes.

>>> Recipe().worlds, Recipe(**QUICK).sft_episodes
(4, 480)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Every knob of a run (``--quick`` and the flags replace some)."""

    word_level: bool = True
    """Every word of the tokenizer's worlds is one token (else a BPE of ``vocab_size``)."""
    vocab_size: int = 4096
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    question_kinds: tuple[str, ...] = ("single", "comparison")
    """**Simplification**: the kinds of question every phase asks (training and held-out alike).
    Bridge questions, whose second query must be built from the first hop's answer, stayed at
    EM 0 for this model size and budget while one-hop and comparison questions were learnt."""
    ppo_share: float = 0.0
    """Share of world 0's training questions kept out of SFT and used for PPO only (0: SFT and
    PPO share every training question). With one world, behaviour cloning memorises the
    questions it sees (training reward 1, so every GRPO advantage is 0) and held-back questions
    give PPO a signal; with several ``worlds`` memorising stops paying, and holding questions
    back cost SFT more than it gave PPO (BENCHMARKS.md). Other worlds always go to SFT whole."""
    worlds: int = 4
    """Scripted training episodes come from the small worlds of seeds ``0 .. worlds - 1`` (train
    questions only): each world's facts then recur a few times only, so recalling a memorised
    fact stops paying and copying it from the retrieved document is what lowers the loss.
    Evaluation stays on world 0's ``split="test"`` questions."""
    sft_rename_share: float = 0.0
    """Share of the scripted SFT episodes whose invented names are renamed (``agents.rename``):
    each name, in every token of the episode, becomes a random other invented word of the same
    role (a city another city). Without it, a name that only held-out questions ask about is
    never written in training, and the policy searches for a name it has written instead. Off
    by default: at every share tried (0.1 to 1) it lowered held-out EM within the 20-minute
    budget (BENCHMARKS.md)."""
    scripted_state: str = "chained"
    """The scripted agent's state format in every SFT episode (``agents.scripted``): ``"chained"``
    (``done=.. | now=<question>``) or ``"indexed"`` (``Q1=.. | next=Q2.a#1``). Chained names no
    question by number, so moving on from the second question to the third is the same step as
    from the first to the second; and its first turn copies the question into the state, where
    the search then copies the entity from: held-out EM 0.614 after 20 minutes, against 0.514
    indexed on the same day (BENCHMARKS.md)."""
    sft_episodes: int = 24000
    sft_lr: float = 3e-3
    sft_batch: int = 4
    sft_warmup: int = 30
    sft_eval_every: int = 1000
    """Greedy held-out EM on ``sft_eval_episodes`` every this many SFT steps (0: only at the end)."""
    sft_eval_episodes: int = 16
    sft_minutes: float = 20.0
    """Wall-time budget of one SFT run: training stops there (its learning rate, which decays to 0
    over ``sft_episodes``, may not have reached 0) or when the episodes are used up."""
    ppo_minutes: float = 20.0
    """Wall-time budget of the PPO phase (its held-out evaluations included)."""
    scale_minutes: float = 12.0
    """Wall-time budget of the scaling phase's SFT; its two runs (``mem1``, ``full``) go side by
    side, one process each."""
    ppo_steps: int = 200
    ppo_episodes: int = 32
    ppo_advantage: str = "grpo"
    """``"gae"`` (value head, MEM1's choice) or ``"grpo"`` (groups of ``ppo_group`` rollouts per question)."""
    ppo_group: int = 4
    ppo_epochs: int = 1
    ppo_mini_batch: int = 32
    """Episodes per gradient step of PPO: ``ppo_episodes / ppo_mini_batch`` steps per epoch."""
    ppo_entropy_coef: float = 0.001
    ppo_questions: str = "train"
    """Questions of PPO's rollouts: ``"train"`` (every world's training questions, which SFT saw)
    or ``"unseen"`` (the ``split="test"`` questions of worlds ``1 .. worlds - 1``, which no other
    phase uses; world 0's stay the held-out set): rollouts then start near 40% reward instead of
    80%, so many more GRPO groups carry a signal."""
    ppo_rename_share: float = 0.0
    """Share of PPO's rollout episodes played with the worlds' invented names renamed
    (``agents.rename.RenamedNames``: the policy sees a consistent random renaming, the env scores
    the original). A renamed episode cannot be answered from memorised facts, only by copying
    from the prompt and the documents, which is what held-out questions need. Off by default:
    at 0.5 and 1 it did not raise held-out EM in 200 steps (BENCHMARKS.md)."""
    ppo_temperature: float = 1.0
    """Sampling temperature of PPO's rollouts (held-out "sampled" evaluation stays at 1)."""
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    ppo_eval_every: int = 40
    scale_sft_episodes: int = 6000
    """Episodes of each scaling-phase SFT run, its learning rate decaying to 0 over them: enough
    that ``scale_minutes`` ends the run on this box (2,400 ended ``mem1`` in 4.5 minutes idle)."""
    scale_lr: float = 1e-3
    """Peak learning rate of the scaling phase's SFT, which starts from the trained 1-objective
    checkpoint: ``sft_lr`` there undoes much of what that checkpoint knows before it learns
    the longer episodes."""
    scale_rename_share: float = 0.0
    """``sft_rename_share`` of the scaling phase's SFT episodes: there a policy must copy the next
    question from the prompt into ``now=``, and on a training question writing a remembered one
    scores the same. Off by default: at 0.5 the policy still moved on to the next question in 1
    of 16 held-out turns, 0 without it (``scripts/step_agreement.py``; BENCHMARKS.md)."""
    scale_objectives: tuple[int, ...] = (1, 2, 4, 8)
    """Objectives per episode at which the scaling phase evaluates."""
    scale_train_objectives: tuple[int, ...] = (2,)
    """Objectives per episode of the scaling phase's SFT episodes (spread evenly over them).
    ``(2,)`` is MEM1's setting. A from-scratch model trained only at N = 2 never writes ``Q3``..
    ``Q8`` and has no way to learn that a third question follows the second; ``1,2,4,8``
    (a stated simplification) shows it every index, and both contexts train on the same mix."""
    eval_worlds: int = 1
    """Held-out questions: the ``split="test"`` questions of the small worlds ``0 .. eval_worlds - 1``
    (1: world 0's 70, the issue's measure; 64-75 more per world, whose training questions SFT
    and PPO also use)."""
    eval_episodes: int = 0
    """Held-out episodes per world at 1 objective, its test questions in order (0: every one once)."""
    scale_eval_episodes: int = 32
    max_new_tokens: int = 64
    scale_max_new_tokens: int = 128
    """Generation limit per turn in the scaling phase's evaluations: at N = 8 the scripted
    agent's longest turn (its state and its answer each list 8 answers) is 110 tokens in the
    indexed format and 90 chained, so ``max_new_tokens`` would cut the very turns that answer."""

    def __post_init__(self) -> None:
        for share in ("sft_rename_share", "scale_rename_share", "ppo_rename_share"):
            if not 0 <= getattr(self, share) <= 1:
                raise ValueError(f"{share} must be in [0, 1], got {getattr(self, share)}")
        if self.scripted_state not in ("indexed", "chained"):
            raise ValueError(f"scripted_state must be 'indexed' or 'chained', got {self.scripted_state!r}")
        if self.ppo_questions not in ("train", "unseen"):
            raise ValueError(f"ppo_questions must be 'train' or 'unseen', got {self.ppo_questions!r}")
        if self.ppo_questions == "unseen" and (self.worlds < 2 or self.ppo_share):
            raise ValueError(
                f"ppo_questions='unseen' needs worlds >= 2 and ppo_share 0 (got worlds={self.worlds}, "
                f"ppo_share={self.ppo_share}): world 0's test questions are the held-out set"
            )
        if not 1 <= self.eval_worlds <= (1 if self.ppo_questions == "unseen" else self.worlds):
            raise ValueError(
                f"eval_worlds must be 1..worlds ({self.worlds}), and 1 with ppo_questions='unseen' "
                f"(PPO trains on the other worlds' test questions), got {self.eval_worlds}"
            )


QUICK = {
    "sft_episodes": 480,
    "sft_eval_every": 0,
    "sft_eval_episodes": 16,
    "eval_episodes": 8,
    "ppo_steps": 4,
    "ppo_episodes": 8,
    "ppo_mini_batch": 8,
    "ppo_eval_every": 4,
    "scale_sft_episodes": 64,
    "scale_eval_episodes": 16,
    "scale_objectives": (1, 2),
}
