"""Selection: choosing one summary per dialogue. `consensus` is the ROUGE-consensus (minimum-Bayes-risk) rule, its
membership/weights/prior fitted on rows with references and judged by k-fold; `postprocess` holds the rules, each
kept only for a measured gain on the fitting rows.

Pure functions: texts and references in, choices out; no files. Imports only scoring and core modules.
"""
