"""Models: loading a checkpoint the same way for a hub id, a local folder or a tiny stand-in (`loading`), prompts and
stop tokens (`prompts`, `special_tokens`, `seq2seq`, `encoding`), training (`training`, `losses`), generation
(`generation` over the `hf_backend` and `vllm_backend` engines), stand-ins built from real checkpoints' facts
(`tiny`, `standins`), `dialsum preview` (`preview`) and the dry-run memory plan (`memory`).

The only package that imports torch, transformers, peft or vLLM (always inside functions, so importing it is cheap).
May import core modules, io (data rows, the candidate store) and scoring (dev scores during training); never
selection, engine, tune, commands or cli.
"""
