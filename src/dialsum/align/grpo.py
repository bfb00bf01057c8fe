"""GRPO (decoder-only) with TRL's GRPOTrainer: each step samples a group of completions per train dialogue and
rewards each with the leaderboard metric against the dialogue's reference (align.reward); the advantage is the
reward relative to its group, the KL term (beta) keeps the policy near SFT (TRL's frozen `ref` adapter copy).

Prompts are dialsum's own encoding: the dataset's `prompt` column carries the fname and `_tokenize_prompts` (TRL
1.16) maps it to the ids generation uses, so the model samples from exactly the prompt SFT trained on. Generation
stops on dialsum's stop ids (end-of-turn included) because TRL reads them from the model's generation config.
Groups are sampled with transformers `generate` (TRL's colocated vLLM cannot load a 4-bit policy with the pinned
vLLM, nor serve trained tag rows: `align.use_vllm` is refused by config validation).
"""
from __future__ import annotations

from pathlib import Path

from dialsum.align.common import Prepared, Setup, dev_score, last_checkpoint
from dialsum.config import AlignSpec, ModelConfig
from dialsum.io.data import Dialogue


def prompt_dataset(rows: list[Dialogue]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": d.fname, "fname": d.fname, "reference": d.summary} for d in rows])


def make_trainer(model, tokenizer, cfg: ModelConfig, spec: AlignSpec, rows: list[Dialogue], reward,
                 stops: list[int], ckpt_dir: Path, callbacks: list):
    from trl import GRPOConfig, GRPOTrainer

    from dialsum.align.common import ResumesPolicy, trainer_kwargs
    from dialsum.align.policy import trl_keeps_the_policy
    from dialsum.models.encoding import encode_input

    prompt_ids = {d.fname: encode_input(tokenizer, d.dialogue, cfg) for d in rows}
    model.generation_config.eos_token_id = list(stops)  # TRL stops and masks completions on these

    class DialsumPrompts(ResumesPolicy, GRPOTrainer):
        def _tokenize_prompts(self, prompts: list):
            return [list(prompt_ids[p]) for p in prompts], None, {}

    kw = trainer_kwargs(spec, cfg, ckpt_dir)
    kw["per_device_train_batch_size"] = spec.batch_size * spec.samples  # completions per step: prompts x group
    args = GRPOConfig(**kw, num_generations=spec.samples, beta=spec.beta, temperature=spec.temperature,
                      top_p=spec.top_p, max_completion_length=cfg.max_new_tokens, use_vllm=False,
                      log_completions=False, disable_dropout=True)
    with trl_keeps_the_policy(model):
        return DialsumPrompts(model=model, reward_funcs=[reward], args=args, train_dataset=prompt_dataset(rows),
                              processing_class=tokenizer, callbacks=callbacks)


CURVE = {"loss": "loss", "reward": "reward", "reward_std": "reward_std", "kl": "kl",
         "completion_length": "completions/mean_length"}


def prepare(s: Setup) -> Prepared:
    from dialsum.align.policy import greedy_preds
    from dialsum.align.reward import MetricReward

    rewards = s.out / "rewards.csv"
    reward = MetricReward(s.tokenizer, s.metric, s.spec.length_weight)
    reward.resume(rewards, last_checkpoint(s.ckpt))
    held_rows = [s.by_fname[f] for f in s.held_names]
    trainer = make_trainer(s.model, s.tokenizer, s.cfg, s.spec, [s.by_fname[f] for f in s.fit_names], reward,
                           s.stops, s.ckpt, [*s.callbacks, reward.saver(rewards)])

    def measure() -> dict:  # the reward of the greedy summary on held-out train dialogues
        preds = greedy_preds(trainer.model, s.tokenizer, s.cfg, held_rows, s.stops)
        return {"greedy_reward": dev_score(preds, held_rows, s.metric)["final"]}

    return Prepared(trainer, measure, after_training=lambda: reward.write(rewards))
