"""vLLM generation backend: bf16 (GPU) / fp32 (CPU) base + LoRA adapter via LoRARequest, batched.

Prompts go in as token ids rendered by dialsum.models.prompts, so vLLM sees exactly the prompt training used and the
`hf` backend sees. The class must be created from importable code (vLLM on CPU spawns workers), and it points
vLLM's caches and temp files at the run folder.

vLLM serves a base + LoRA adapter only when the base already knows every token: a real checkpoint's vocabulary lacks
the competition's tags (dialsum adds and trains them as PEFT "trainable tokens", which vLLM rejects as an
"unsupported LoRA weight"), so then it serves one merged checkpoint instead (`servable_checkpoint`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dialsum.config import DecodingSpec, GenerateSpec, ModelConfig, vllm_lora_rank
from dialsum.hardware import has_cuda
from dialsum.logs import log

ONLINE_FP8 = "fp8_per_tensor"


def vllm_dtype(cfg: ModelConfig) -> str:
    """The dtype vLLM serves in: the compute dtype training and merging use (`loading.compute_dtype`), so `precision:
    auto` on a card without bf16 (T4, V100: compute capability < 8.0, which vLLM refuses bf16 on) serves fp16 as the
    merged checkpoint was written, and fp32 on CPU."""
    import torch

    from dialsum.models.loading import compute_dtype

    return {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[compute_dtype(cfg.precision)]


def _has_token_rows(adapter: Path) -> bool:
    """Whether a PEFT adapter carries what vLLM cannot load: trainable token rows or whole saved modules."""
    conf = json.loads((adapter / "adapter_config.json").read_text())
    return bool(conf.get("trainable_token_indices") or conf.get("modules_to_save"))


def _vocab_rows(model_path: str, cfg: ModelConfig) -> int:
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(model_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    return int(getattr(conf, "vocab_size", None) or conf.get_text_config().vocab_size)


def servable_checkpoint(cfg: ModelConfig, base_path: str, adapter_dir: Path | None,
                        work_dir: Path) -> tuple[str, Path | None]:
    """(model folder for vLLM, LoRA adapter folder or None). The base and the adapter as they are when vLLM can serve
    them; otherwise (tags new to the vocabulary, trainable token rows) the base grown to dialsum's tokenizer with the
    adapter merged in, written once to `work_dir/vllm-model` (merged on the GPU when it fits there, else on CPU, and
    the GPU emptied before vLLM starts; atomically, so a killed merge is redone, not half-read). A fully fine-tuned model is its own base."""
    from dialsum.models.loading import is_full_model, load_tokenizer

    adapter = Path(adapter_dir) if adapter_dir is not None else None
    model_path, lora = (str(adapter), None) if is_full_model(adapter) else (base_path, adapter)
    tokenizer = load_tokenizer(model_path, cfg)
    grows = len(tokenizer) > _vocab_rows(model_path, cfg) or bool(tokenizer.dialsum_added_ids)
    # vLLM's beam search ends a beam only on the served tokenizer's EOS: it must be the token training ends with
    eos_ok = _trained_end(tokenizer, cfg) == tokenizer.eos_token_id
    if not grows and eos_ok and not (lora is not None and _has_token_rows(lora)):
        return model_path, lora
    out = Path(work_dir).resolve() / "vllm-model"
    if not (out / "config.json").is_file():
        _merge(cfg, base_path, adapter, out)
    return str(out), None


def _trained_end(tokenizer, cfg: ModelConfig) -> int | None:
    from dialsum.models.prompts import trained_end_id
    from dialsum.models.encoding import style_of

    return trained_end_id(tokenizer, style_of(cfg) if cfg.family == "decoder" else None)


def _merge(cfg: ModelConfig, base_path: str, adapter: Path | None, out: Path) -> None:
    """The model transformers generates with (dialsum.models.loading.load_for_inference), merged and saved whole; its
    tokenizer's EOS is the token training ends each target with (Llama-3 chat: <|eot_id|>, not <|end_of_text|>)."""
    from dialsum.models.loading import load_for_inference

    device = merge_device(cfg)
    log(f"vLLM cannot serve {cfg.name}'s added tokens as an adapter: merging on {device} into {out} "
        f"(deleted after generation)")
    tokenizer, model = load_for_inference(cfg, base_path, adapter, device=device)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    end = _trained_end(tokenizer, cfg)
    if end is not None and end != tokenizer.eos_token_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(end)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    del model
    import gc

    gc.collect()  # the merged model's tensors sit in reference cycles: freed now, not when the collector next runs
    if device != "cpu":
        import torch

        torch.cuda.empty_cache()  # give the card back before vLLM measures what it may reserve
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def merge_device(cfg: ModelConfig) -> str:
    """Where to merge: on the GPU when the whole model in the compute dtype (x1.2) fits its free memory, which is
    fast and needs no host RAM; else on CPU (host RAM of the model's size)."""
    if not has_cuda():
        return "cpu"
    import torch

    from dialsum.models.inventory import inventory
    from dialsum.models.memory import compute_bytes

    free, _ = torch.cuda.mem_get_info()
    need = inventory(cfg).total * compute_bytes(cfg) * 1.2
    return "cuda:0" if need < free else "cpu"


def compile_cache(work_dir: Path) -> Path:
    """Where vLLM and torch-inductor keep compiled kernels (and vLLM its IPC sockets): the user's dialsum cache, so
    the second engine start with the same model and settings loads them instead of compiling again (tens of seconds
    on a GPU, ~25 s of g++ on CPU); a folder in this engine's work dir when DIALSUM_CACHE_DIR=off."""
    from dialsum.user_cache import cache_dir

    base = cache_dir()
    return base / "vllm" if base is not None else Path(work_dir).resolve() / "vllm-cache"


class VLLMEngine:
    def __init__(self, cfg: ModelConfig, base_path: str, adapter_dir: Path | None, gen: GenerateSpec, work_dir: Path):
        cache = compile_cache(Path(work_dir))
        cache.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("VLLM_CACHE_ROOT", str(cache))
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
        tmp = cache / "tmp"  # torch-inductor's precompiled headers live under TMPDIR too: shared, so kept
        if len(str(tmp)) < 60:  # vLLM puts `<tmp>/<uuid>` IPC sockets there; AF_UNIX paths stop at ~107 bytes
            tmp.mkdir(exist_ok=True)
            os.environ["TMPDIR"] = str(tmp)
            import tempfile

            tempfile.tempdir = None  # recompute gettempdir() from TMPDIR
        cuda = has_cuda()
        if not cuda:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(gen.cpu_kv_cache_gb))))
            # vLLM-CPU spawns its engine core as a fresh interpreter that imports vLLM and torch again at every
            # start; with no GPU to overlap with there is nothing to gain from it: the core runs in this process
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from dialsum.models.loading import load_tokenizer

        self.cfg = cfg
        base_path, adapter_dir = servable_checkpoint(cfg, base_path, adapter_dir, Path(work_dir))
        self._merged = Path(base_path) if Path(base_path) == Path(work_dir).resolve() / "vllm-model" else None
        self.tokenizer = load_tokenizer(base_path, cfg)
        kwargs = dict(model=base_path, tokenizer=base_path, dtype=vllm_dtype(cfg), seed=cfg.train.seed,
                      max_model_len=gen.max_model_len or (cfg.max_input_tokens + cfg.max_new_tokens),
                      tensor_parallel_size=gen.tensor_parallel_size, trust_remote_code=cfg.trust_remote_code,
                      revision=cfg.revision, enable_lora=adapter_dir is not None, enforce_eager=gen.enforce_eager)
        if adapter_dir is not None:
            kwargs.update(max_lora_rank=vllm_lora_rank(cfg.lora.r), max_loras=1)
        if gen.quantization != "none":
            from dialsum.errors import DialsumError

            if gen.quantization == "4bit" or not cuda:
                raise DialsumError(f"generate.quantization {gen.quantization}: vLLM has no 4-bit loading and its 8-bit "
                                   f"(online fp8) needs a CUDA GPU; use backend hf")
            # vLLM quantises the weights to fp8 as it loads them (W8A16 via FP8 Marlin below fp8 hardware); `fp8` is
            # a deprecated alias of this online method
            kwargs["quantization"] = ONLINE_FP8
        if cuda:
            kwargs["gpu_memory_utilization"] = gen.gpu_memory_utilization
        else:
            # vLLM-CPU cannot rewind a seeded request's generator after a partial (chunked) prefill
            # ("CPU Generator does not use offset"): prefill every prompt whole.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=kwargs["max_model_len"])
        self.llm = LLM(**kwargs)
        self.lora = LoRARequest(f"{cfg.name}-{Path(adapter_dir).name}", 1, str(adapter_dir)) if adapter_dir else None
        from transformers import GenerationConfig

        from dialsum.models.encoding import model_stops

        try:
            eos = GenerationConfig.from_pretrained(base_path).eos_token_id
        except OSError:  # no generation_config.json: the model config's eos (what transformers would use)
            eos = None
        self.stops = model_stops(self.tokenizer, eos, cfg)

    def run(self, prompts: list[list[int]], spec: DecodingSpec, progress,
            seed_offset: int = 0) -> list[list[tuple[str, float | None]]]:
        # per-request seeds make vLLM samples independent of batching; seed_offset is for the hf backend
        if spec.no_repeat_ngram_size:
            from dialsum.errors import DialsumError

            raise DialsumError(f"decoding {spec.name}: no_repeat_ngram_size needs the hf backend (vLLM has none)")
        from dialsum.models.hf_backend import _until_stop
        from dialsum.models.special_tokens import decode_summary

        max_tokens = spec.max_new_tokens or self.cfg.max_new_tokens
        inputs = [{"prompt_token_ids": p} for p in prompts]
        if spec.strategy == "beam":
            from vllm.sampling_params import BeamSearchParams

            # vLLM's beam search ends a beam only on the tokenizer's EOS; a chat checkpoint whose turn ends with its
            # own token (Llama-3's <|eot_id|>) would write past the turn, so each beam is cut at its first stop id
            outs = self.llm.beam_search(inputs, BeamSearchParams(beam_width=spec.num_beams, max_tokens=max_tokens,
                                                                 length_penalty=spec.length_penalty),
                                        lora_request=self.lora)
            results = []
            for p, o in zip(prompts, outs):
                seqs = []
                for s in o.sequences[: spec.n]:
                    toks = s.tokens[len(p):] if s.tokens[: len(p)] == p else s.tokens
                    seqs.append((decode_summary(self.tokenizer, _until_stop(list(toks), self.stops)),
                                 float(s.cum_logprob)))
                results.append(seqs)
        else:
            from vllm import SamplingParams

            greedy = spec.strategy == "greedy"
            sp = SamplingParams(n=spec.n, temperature=0.0 if greedy else spec.temperature,
                                top_p=1.0 if greedy else spec.top_p, top_k=(spec.top_k or -1) if not greedy else -1,
                                seed=None if greedy else spec.seed, max_tokens=max_tokens,
                                repetition_penalty=spec.repetition_penalty, logprobs=0,
                                stop_token_ids=self.stops)
            outs = self.llm.generate(inputs, sp, lora_request=self.lora, use_tqdm=False)
            results = [[(decode_summary(self.tokenizer, _until_stop(list(c.token_ids), self.stops)),
                         c.cumulative_logprob) for c in o.outputs] for o in outs]
        if progress is not None:
            progress.update(len(prompts))
        return results

    def close(self) -> None:
        """Stop vLLM's engine core now (on a GPU its own process: deleting the LLM alone leaves it running, and the
        interpreter's exit then waits on it forever, as multiprocessing joins its non-daemon children)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del self.llm
        if self._merged is not None:  # a full copy of the model: kept only while it serves (a kill leaves it for
            shutil.rmtree(self._merged, ignore_errors=True)  # the resumed stage)
