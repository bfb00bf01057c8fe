"""The libraries a stage child uses, imported once by the fork server stage children are forked from on a machine
without GPUs (dialsum.engine.forked): torch, transformers with its model, tokenizer and Trainer modules, peft and,
through it, bitsandbytes: 8–12 s of imports on these CPUs that every training, generation and scoring child
would otherwise repeat. Importing them starts no thread and touches no device; dialsum.models comes first so its
filters are in place before bitsandbytes logs."""
import importlib

MODULES = ("dialsum.models", "torch", "peft", "transformers", "transformers.models.auto.tokenization_auto",
           "transformers.models.auto.modeling_auto", "transformers.trainer")

for _name in MODULES:
    importlib.import_module(_name)
