"""Metric speed vs rouge-score, same run, identical numbers asserted.

(a) pair computation alone, tokens given: dialsum's all-pairs matrices vs rouge-score scoring the same token lists
    (its _create_ngrams/_score_ngrams/_score_lcs, i.e. RougeScorer.score minus tokenisation);
(b) end to end with tokenisation: all-pairs matrices for the 12 peer systems x 499 test dialogues vs a naive loop
    calling RougeScorer.score per pair (re-tokenising each time), as consensus selection would;
(c) corpus scoring of dev_200 (KoBART predictions) vs rouge-score.
Both sides in one process; dialsum's on-disk morpheme cache is off, so its tokenisation is measured cold.
Run: .venv/bin/python bench/bench_metric.py [--dialogues N]
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

os.environ["DIALSUM_CACHE_DIR"] = "off"

from rouge_score import rouge_scorer  # noqa: E402

from dialsum.scoring.metric import score_corpus
from dialsum.scoring.rouge import features_many, get_semantics  # noqa: E402
from dialsum.scoring.tokenize import tokenize_many  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ko"


def load_systems():
    tables = []
    for p in sorted((SHARED / "peer_test_predictions").glob("*.csv")):
        if p.name == "MANIFEST.csv":
            continue
        with open(p, encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        key = "fname" if "fname" in rows[0] else "id"
        tables.append({r[key]: r["summary"] for r in rows})
    return tables


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dialogues", type=int, default=499)
    args = ap.parse_args()
    systems = load_systems()
    names = list(systems[0])[: args.dialogues]
    k = len(systems)
    npairs = len(names) * k * (k - 1) // 2

    # (b) naive: RougeScorer.score per pair, fresh tokenisation each time (a new tokenizer without a cache)
    import mecab
    plain = mecab.MeCab()

    class Fresh:
        def tokenize(self, s):
            return plain.morphs(s)

    naive_scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=Fresh())
    t0 = time.perf_counter()
    naive = {}
    for f in names:
        texts = [s.get(f, "") for s in systems]
        for i in range(k):
            for j in range(i + 1, k):
                sc = naive_scorer.score(texts[j], texts[i])
                naive[f, i, j] = (sc["rouge1"].fmeasure, sc["rouge2"].fmeasure, sc["rougeL"].fmeasure)
    t_naive = time.perf_counter() - t0

    t0 = time.perf_counter()
    all_texts = [s.get(f, "") for f in names for s in systems]
    toks = dict(zip(all_texts, tokenize_many(all_texts, "mecab")))
    t_tok = time.perf_counter() - t0
    t1 = time.perf_counter()
    sem = get_semantics("rouge-score")
    distinct = list(toks)
    feats = dict(zip(distinct, features_many([toks[t] for t in distinct], "rouge-score")))
    mats = dict(zip(names, sem.pairwise_many([[feats[s.get(f, "")] for s in systems] for f in names])))
    t_pairs = time.perf_counter() - t1
    t_fast = time.perf_counter() - t0
    for (f, i, j), v in naive.items():
        assert tuple(mats[f][i, j]) == v, (f, i, j)

    # (a) tokens given: rouge-score's own scoring of the same token lists vs dialsum matrices (features included)
    tok_lists = {f: [list(toks[s.get(f, "")]) for s in systems] for f in names}
    t0 = time.perf_counter()
    for f in names:
        tl = tok_lists[f]
        for i in range(k):
            for j in range(i + 1, k):
                rouge_scorer._score_ngrams(rouge_scorer._create_ngrams(tl[j], 1), rouge_scorer._create_ngrams(tl[i], 1))
                rouge_scorer._score_ngrams(rouge_scorer._create_ngrams(tl[j], 2), rouge_scorer._create_ngrams(tl[i], 2))
                rouge_scorer._score_lcs(tl[j], tl[i])
    t_rs_pairs = time.perf_counter() - t0
    t0 = time.perf_counter()
    flat = [t for f in names for t in tok_lists[f]]
    fs = features_many(flat, "rouge-score")
    sem.pairwise_many([fs[i:i + k] for i in range(0, len(fs), k)])
    t_our_pairs = time.perf_counter() - t0

    # (c) corpus scoring, dev_200
    with open(SHARED / "dev_200.csv", encoding="utf-8") as fh:
        dev = {r["fname"]: r["summary"] for r in csv.DictReader(fh)}
    with open(SHARED / "dev_200_kobart_predictions.csv", encoding="utf-8") as fh:
        pred = {r["fname"]: r["summary"] for r in csv.DictReader(fh)}
    t0 = time.perf_counter()
    rs = [naive_scorer.score(dev[f], pred[f]) for f in dev]
    t_rs_corpus = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = score_corpus([pred[f] for f in dev], [[dev[f]] for f in dev], "rouge-score")
    t_our_corpus = time.perf_counter() - t0
    assert abs(ours.rouge1 - sum(x["rouge1"].fmeasure for x in rs) / len(rs)) < 1e-12

    print(f"systems={k} dialogues={len(names)} pairs={npairs}")
    print(f"(a) pairs, tokens given: rouge-score {t_rs_pairs:.3f} s, dialsum {t_our_pairs:.3f} s -> {t_rs_pairs / t_our_pairs:.1f}x")
    print(f"(b) all-pairs end to end: naive rouge-score loop {t_naive:.2f} s, dialsum {t_fast:.2f} s "
          f"(tokenise {t_tok:.2f} s + pairs {t_pairs:.2f} s) -> {t_naive / t_fast:.1f}x; numbers identical")
    print(f"(c) corpus score dev_200: rouge-score {t_rs_corpus:.3f} s, dialsum {t_our_corpus:.3f} s")


if __name__ == "__main__":
    main()
