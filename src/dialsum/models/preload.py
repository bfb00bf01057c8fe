"""The libraries a stage child uses, imported once by the fork server stage children are forked from on a machine
without GPUs (dialsum.engine.forked): torch, transformers with its model, tokenizer and Trainer modules, peft and,
through it, bitsandbytes — about 8 s of imports on a CPU that every training, generation and scoring child would
otherwise repeat. Importing them starts no thread and touches no device; dialsum.models comes first so its filters
are in place before bitsandbytes logs."""
import dialsum.models  # noqa: F401 - the bitsandbytes notice filter
import peft  # noqa: F401 - imports bitsandbytes when installed
import torch  # noqa: F401
from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer,  # noqa: F401 - lazy modules
                          Trainer)
