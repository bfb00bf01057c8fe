"""The parts of a model config (LoRA, training, alignment, decoding, the tiny stand-in, architecture numbers):
typed pydantic sections that `dialsum.config` assembles into a ModelConfig."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator



class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)



class LoraSpec(Strict):
    r: int = Field(8, ge=1, le=512, description="LoRA rank (one vLLM serves: 8, 16, 32, 64, 128, ...)")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch's input")

    @field_validator("r")
    @classmethod
    def _served(cls, v):
        if v not in VLLM_LORA_RANKS:
            raise ValueError(f"rank {v} is not one vLLM serves (max_lora_rank must be one of "
                             f"{', '.join(map(str, VLLM_LORA_RANKS))})")
        return v


class TrainSpec(Strict):
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (cosine schedule after warmup)")
    epochs: float = Field(3, gt=0, description="passes over the (augmented) train rows, unless max_steps is set")
    max_steps: int = Field(-1, ge=-1, description="-1: epochs decide; else this many optimizer steps (0 means nothing)")
    batch_size: int = Field(4, ge=1, description="rows per micro-batch (per GPU under torchrun)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="share of the steps spent warming the learning rate up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    eval_steps: int = Field(50, ge=1, description="evaluate (greedy-decode and score the dev-select subset) and "
                                                  "checkpoint every N steps")
    logging_steps: int = Field(10, ge=1, description="log the training loss every N steps")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept on disk (the best is always kept)")
    eval_subset: int = Field(64, ge=1, description="dev rows greedy-decoded and scored at each evaluation")
    early_stopping_patience: int | None = Field(3, ge=1, description="evaluations without gain before stopping "
                                                                      "(None: never)")
    gradient_checkpointing: bool = Field(True, description="recompute activations in backward (on a GPU): less "
                                                           "memory, ~30 % slower")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the cross-entropy")
    rdrop_alpha: float = Field(0.0, ge=0, description="R-Drop: weight of the symmetric KL between two dropout passes")
    augment: Literal["none", "mixed"] = Field("none", description="mixed: every train row once per instruction "
                                                                  "template (x5); none: the model's instruction only")
    optim: str = Field("auto", description="Trainer optimizer name; auto: paged_adamw_8bit for QLoRA on a GPU, else "
                                           "adamw_torch")
    seed: int = Field(42, ge=0, description="seed of LoRA's initialisation, the row order and dropout")
    on_truncation: Literal["warn", "error"] = Field(
        "warn", description="more than 1 % of dialogues over max_input_tokens or 0.5 % of references over "
                            "max_new_tokens (measured with the model's tokenizer before training): warn, or stop")
    launcher: Literal["none", "torchrun"] = Field(
        "none", description="torchrun: the train stage runs `torchrun --nproc_per_node nproc -m dialsum.engine.worker`"
                            " on nproc GPUs (data parallel, the batch is per GPU); none: one process, one GPU")
    nproc: int = Field(1, ge=1, description="processes (GPUs) for launcher torchrun")

    @model_validator(mode="after")
    def _launcher(self):
        if self.max_steps == 0:
            raise ValueError("train.max_steps 0 trains nothing: -1 (epochs decide) or a positive count")
        if self.nproc > 1 and self.launcher != "torchrun":
            raise ValueError(f"train.nproc {self.nproc} needs train.launcher: torchrun (one process sees one GPU)")
        return self


class TinyModelSpec(Strict):
    """A few-hundred-K-parameter Llama built locally (no download), used by the embedded default and tests."""
    vocab_size: int = Field(2000, ge=300, description="BPE vocabulary (the 256 byte tokens and merges)")
    hidden_size: int = Field(128, ge=32, description="width of the tiny model")
    intermediate_size: int = Field(256, ge=1, description="MLP width of the tiny model")
    num_hidden_layers: int = Field(2, ge=1, description="decoder layers (a BART gets as many encoder and decoder "
                                                        "layers)")
    num_attention_heads: int = Field(4, ge=1, description="attention heads (head_dim = hidden_size / heads: 32 or 64 "
                                                          "for vLLM's CPU kernels)")
    num_key_value_heads: int = Field(4, ge=1, description="key/value heads (grouped-query attention when fewer than "
                                                          "the heads)")
    pretrain_steps: int = Field(300, ge=0, description="causal-LM (or denoising) steps on the train dialogues before "
                                                       "saving, so it writes Korean")
    seed: int = Field(0, ge=0, description="seed of the weights and the pre-training")
    with_tags: bool = Field(False, description="true: the competition's tags are in the vocabulary from the start "
                                                  "(no real checkpoint has them: dialsum adds and trains them itself)")
    tie_word_embeddings: bool = Field(True, description="false: the LM head is its own matrix (as in Llama-3-8B)")
    tokens: Literal["plain", "llama-3"] = Field(
        "plain", description="special tokens and chat format: plain (<s>, </s>, <pad>, role markers; the template "
                             "ends a turn with </s>) or llama-3 (MLP-KTLim/llama-3-Korean-Bllossom-8B's facts: the "
                             "tokenizer adds <|begin_of_text|> and the template writes it too, a turn ends with "
                             "<|eot_id|> (the tokenizer's EOS), the generation config stops only on <|end_of_text|>)")

    @model_validator(mode="after")
    def _head_dim(self):
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_key_value_heads {self.num_key_value_heads} must divide num_attention_heads "
                             f"{self.num_attention_heads}")
        hd = self.hidden_size // self.num_attention_heads
        if hd not in (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512):
            raise ValueError(f"head_dim {hd} is not one vLLM's CPU kernels accept (use 32 or 64)")
        return self


class DecodingSpec(Strict):
    name: str = Field(description="the decoding's name: the candidate source is <model>/<name>")
    strategy: Literal["greedy", "beam", "sample"] = Field("greedy", description="greedy, beam search or sampling")
    num_beams: int = Field(1, ge=1, description="beam width (beam)")
    length_penalty: float = Field(1.0, description="beam search: score / length**length_penalty (any sign: "
                                                  "negative favours short beams)")
    n: int = Field(1, ge=1, description="candidates per dialogue (sampling: samples; beam: returned beams)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass (1: none)")
    top_k: int = Field(0, ge=0, description="0: no top-k cut")
    repetition_penalty: float = Field(1.0, gt=0, description="penalty on tokens already generated (1: none)")
    seed: int = Field(0, ge=0, description="sampling seed (each dialogue's samples are seeded from it)")
    max_new_tokens: int | None = Field(None, ge=1, description="this decoding's length limit (default: the model's "
                                                               "max_new_tokens)")
    no_repeat_ngram_size: int = Field(0, ge=0, description="transformers backend only")

    @model_validator(mode="after")
    def _consistent(self):
        if self.strategy == "greedy" and self.n != 1:
            raise ValueError(f"decoding {self.name}: greedy gives one candidate (n must be 1)")
        if self.strategy == "beam" and self.n > self.num_beams:
            raise ValueError(f"decoding {self.name}: n={self.n} > num_beams={self.num_beams}")
        return self


class ArchSpec(Strict):
    """Architecture numbers for the `--dry-run` memory plan (from the model card; a cached config.json wins)."""
    vocab_size: int = Field(ge=1, description="vocabulary rows")
    hidden_size: int = Field(ge=1, description="model width")
    num_layers: int = Field(ge=1, description="transformer layers")
    num_kv_heads: int | None = Field(None, ge=1, description="key/value heads (None: as many as attention heads)")
    head_dim: int | None = Field(None, ge=1, description="per-head width (None: hidden_size / heads)")
    intermediate_size: int | None = Field(None, ge=1, description="MLP width (None: estimated)")
    tie_word_embeddings: bool | None = Field(None, description="unknown counts as untied: the larger plan")


class AlignSpec(Strict):
    """Phase 3, after SFT: preference optimisation whose reward is the leaderboard metric itself (docs/alignment.md).

    dpo and rank learn from K samples per train dialogue of the SFT model, ranked by the metric against the
    reference (the `prefs:<model>` stage); grpo samples online. The aligned weights replace SFT's only when their
    greedy dev-select gain (generated as the generate stage will) exceeds one standard error."""
    method: Literal["none", "dpo", "grpo", "rank"] = Field("none", description="none (SFT only), dpo or grpo "
                                                                               "(decoder-only, TRL), rank (BRIO "
                                                                               "ranking loss, either family)")
    rows: int = Field(64, ge=4, description="train dialogues aligned on (a seeded sample of train; never dev or test)")
    samples: int = Field(4, ge=2, description="dpo/rank: samples per dialogue; grpo: the group size")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of those samples")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass of those samples")
    min_margin: float = Field(1.0, ge=0, description="dpo/rank: least metric gap (final points, 0-100) between a "
                                                     "preferred and a dispreferred sample of one dialogue")
    pairs_per_row: int = Field(2, ge=1, description="dpo: pairs per dialogue (best vs worst, then next best vs worst)")
    beta: float = Field(0.1, ge=0, description="dpo: DPO's beta; grpo: the KL coefficient (0: no reference model)")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate of the alignment steps")
    steps: int = Field(20, ge=1, description="optimizer steps")
    batch_size: int = Field(4, ge=1, description="dialogues per step (grpo: prompts, each with `samples` completions)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps spent warming the learning rate up")
    save_steps: int = Field(5, ge=1, description="checkpoint every N steps (a killed stage resumes from the last)")
    logging_steps: int = Field(1, ge=1, description="log the method's curve every N steps")
    length_weight: float = Field(0.0, ge=0, description="grpo: reward minus length_weight x |len - ref len| / ref len "
                                                        "(morphemes); 0 = the metric alone")
    rank_margin: float = Field(0.001, ge=0, description="rank: BRIO's margin per rank gap (lambda)")
    mle_weight: float = Field(1.0, ge=0, description="rank: weight of the reference's MLE term")
    heldout: float = Field(0.25, gt=0, lt=1, description="share of the dialogues kept out of training to measure "
                                                         "margin / ranking loss / reward before and after")
    eval_rows: int | None = Field(None, ge=1, description="dev-select and dev-report rows greedy-scored for SFT and "
                                                         "aligned (None: all); the keep decision sees dev-select only")
    use_vllm: bool = Field(False, description="refused: TRL 1.16's colocated vLLM cannot serve dialsum's policies "
                                              "(see the validator); GRPO groups are sampled with transformers")
    seed: int = Field(0, ge=0, description="seed of the aligned rows, the held-out split and the samples")

    @field_validator("use_vllm")
    @classmethod
    def _no_trl_vllm(cls, v):
        if v:
            raise ValueError("use_vllm: TRL 1.16 asks vLLM to load the 4-bit policy (quantization='bitsandbytes', "
                             "which the pinned vLLM 0.33 no longer has; TRL supports vLLM 0.22-0.31 only) and cannot "
                             "serve the tag rows dialsum trains; remove it: GRPO samples its groups with transformers")
        return v
