"""Phase 3, after SFT: preference optimisation whose reward is the leaderboard metric (DPO and GRPO through TRL,
a BRIO ranking loss), one module per method behind one interface (`common.Setup -> Prepared`). Runs inside the
`prefs` and `align` stage children."""
