"""Phase 3, after SFT: preference optimisation whose reward is the leaderboard metric (DPO and GRPO through TRL,
a BRIO ranking loss for seq2seq). Runs inside the `prefs` and `align` stage children; may import core, io,
scoring and models."""
