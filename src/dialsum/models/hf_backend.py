"""Batched generation with transformers: length-sorted batches, left padding, greedy / beam / sampling.

Used as the `hf` backend and for dev scoring during training. Returns, per prompt, a list of (text, logprob)
with `spec.n` entries (1 for greedy).
"""
from __future__ import annotations

from dialsum.config import DecodingSpec


def generate_hf(model, tokenizer, prompts: list[list[int]], spec: DecodingSpec, max_new_tokens: int,
                batch_size: int = 16, progress=None, seed_offset: int = 0,
                extra: dict | None = None, stops: list[int] | None = None) -> list[list[tuple[str, float | None]]]:
    """Decoder-only prompts are left-padded (generation continues them); encoder inputs are right-padded (BART's
    learned positions count from the left) and the decoder's start token is not part of the output. `stops`: the
    ids to stop on (train.model_stops; default: the generation config's eos ids and the tokenizer's EOS).

    Sampling uses exactly the decoding's temperature/top-p/top-k (top_k 0 = off), never the checkpoint's
    generation-config defaults (transformers would otherwise apply its top_k 50, or Qwen's 20), as vLLM does."""
    import torch

    from dialsum.models.special_tokens import decode_summary

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    results: list[list[tuple[str, float | None]]] = [[] for _ in prompts]
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n_ret = spec.n
    stops = list(stops) if stops is not None else stop_token_ids(model, tokenizer)
    kwargs = dict(max_new_tokens=spec.max_new_tokens or max_new_tokens, pad_token_id=pad,
                  eos_token_id=stops, return_dict_in_generate=True, output_scores=True,
                  repetition_penalty=spec.repetition_penalty, **(extra or {}))
    if spec.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = spec.no_repeat_ngram_size
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    if spec.strategy == "greedy":
        kwargs.update(do_sample=False, num_beams=1)
    elif spec.strategy == "beam":
        kwargs.update(do_sample=False, num_beams=spec.num_beams, num_return_sequences=n_ret,
                      length_penalty=spec.length_penalty, early_stopping=True)
    else:
        kwargs.update(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k,
                      min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, num_return_sequences=n_ret)
    with torch.inference_mode():
        for b, start in enumerate(range(0, len(order), batch_size)):
            idx = order[start:start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                start = 0 if enc_dec else width - len(prompts[i])
                input_ids[row, start:start + len(prompts[i])] = torch.tensor(prompts[i])
                mask[row, start:start + len(prompts[i])] = 1
            if spec.strategy == "sample":
                torch.manual_seed(spec.seed * 100003 + seed_offset * 1009 + b)
            out = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
            new = out.sequences[:, 1:] if enc_dec else out.sequences[:, width:]
            logprobs = _logprobs(model, out, spec, new, stops)
            texts = [decode_summary(tokenizer, _until_stop(row, stops)) for row in new.tolist()]
            for row, i in enumerate(idx):
                for k in range(n_ret):
                    j = row * n_ret + k
                    results[i].append((texts[j].strip(), logprobs[j]))
            if progress is not None:
                progress.update(len(idx))
    if was_training:
        model.train()
    return results


def _until_stop(ids: list[int], stops: list[int]) -> list[int]:
    """The generated ids before the first stop token: a stop token is not part of the summary (vLLM drops it too)."""
    for k, t in enumerate(ids):
        if t in stops:
            return ids[:k]
    return ids


def stop_token_ids(model, tokenizer) -> list[int]:
    """The default stop set without a prompt style: the generation config's eos ids and the tokenizer's EOS
    (dialsum.models.prompts.stop_token_ids; callers pass encoding.model_stops, which adds a chat template's end-of-turn)."""
    from dialsum.models.prompts import stop_token_ids as stops_of

    return stops_of(tokenizer, getattr(getattr(model, "generation_config", None), "eos_token_id", None))


def _logprobs(model, out, spec: DecodingSpec, new, stops: list[int]) -> list[float | None]:
    """Each sequence's log-probability: its generated tokens up to and including the first stop token (as vLLM's
    cumulative log-probability counts them), not the padding a batch adds after a sequence has finished."""
    if spec.strategy == "beam" and getattr(out, "sequences_scores", None) is not None:
        return [float(x) for x in out.sequences_scores]
    try:
        scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    except Exception:  # noqa: BLE001 - a backend without scores just gives no log-probability
        return [None] * new.shape[0]
    import torch

    is_stop = torch.isin(new, torch.tensor(stops, dtype=new.dtype, device=new.device)).int()
    after_stop = (torch.cumsum(is_stop, dim=-1) - is_stop) > 0
    scores = scores.masked_fill(after_stop.to(scores.device), 0.0)
    scores = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores))
    return [float(s) for s in scores.sum(-1)]
