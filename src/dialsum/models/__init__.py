"""Models: loading a checkpoint the same way for a hub id, a local folder or a tiny stand-in (`loading`), prompts and
stop tokens (`prompts`, `special_tokens`, `seq2seq`, `encoding`), training (`training`, `losses`), generation
(`generation` over the `hf_backend` and `vllm_backend` engines), stand-ins built from real checkpoints' facts
(`tiny`, `standins`), the Trainer (`trainer`), `dialsum preview` (`preview`) and the dry-run memory plan (`memory`).

The only package that imports torch, transformers, peft or vLLM (inside functions, or in modules only a model stage
imports, so importing the package is cheap).
"""
import logging

# bitsandbytes' CPU backend logs at import that an optional `kernels` package (a fused 4-bit kernel) is missing; dialsum
# switches that fused kernel off anyway (GUIDE §2), so the notice is noise on every run. Installed here, before any
# model code can import bitsandbytes (docs/troubleshooting.md).
BNB_KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: not str(record.msg).startswith(BNB_KERNELS_NOTICE))
