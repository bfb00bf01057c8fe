"""The ensemble: one summary chosen per dialogue among every model's candidates by ROUGE consensus (minimum-Bayes-risk
with the leaderboard metric as utility), its voting (members, weights, quality prior) fitted on rows with references
and judged by k-fold with the one-standard-error rule. Pure functions: texts and references in, picks out."""
from dialsum.ensemble.consensus import (SCORE_COLUMNS, CandidateSet, EnsembleResult, Method, Pick, Voting, ensemble,
                                        score_rows)

__all__ = ["SCORE_COLUMNS", "CandidateSet", "EnsembleResult", "Method", "Pick", "Voting", "ensemble", "score_rows"]
