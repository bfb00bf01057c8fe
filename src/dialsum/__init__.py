"""dialsum: fine-tune decoder-only LLMs for Korean dialogue summarisation and win the leaderboard."""

__version__ = "0.1.0"
