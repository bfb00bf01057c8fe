"""Models: loading a checkpoint the same way for a hub id, a local folder or a tiny stand-in (`loading`), prompts and
stop tokens (`prompts`, `special_tokens`, `seq2seq`, `encoding`), training (`training`, `losses`), generation
(`generation` over the `hf_backend` and `vllm_backend` engines), stand-ins built from real checkpoints' facts
(`tiny`, `standins`), `dialsum preview` (`preview`) and the dry-run memory plan (`memory`).

The only package that imports torch, transformers, peft or vLLM (always inside functions, so importing it is cheap).
May import core modules, io (data rows, the candidate store) and scoring (dev scores during training); never
selection, engine, tune, commands or cli.
"""
import logging

# bitsandbytes' CPU backend logs at import that an optional `kernels` package (a fused 4-bit kernel) is missing; dialsum
# switches that fused kernel off anyway (GUIDE §2), so the notice is noise on every run. Installed here, before any
# model code can import bitsandbytes (docs/troubleshooting.md).
BNB_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith(BNB_KERNELS_NOTICE))
