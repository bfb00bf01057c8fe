"""Scoring: the leaderboard metric. Morpheme tokenizers with a persistent cache (`tokenize`, `morpheme_cache`),
ROUGE features and all-pairs matrices (`rouge`, `codes`, `lcs_kernel`), and corpus scores (`metric`).

Pure functions of texts (the morpheme cache is the one file it writes, keyed by tokenizer identity); `bootstrap`
holds the intervals, the k-fold split and the one-standard-error rule every dev-select choice uses.
"""
