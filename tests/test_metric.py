"""The metric equals rouge-score and pltrdy `rouge` 1.0.1 to 1e-12, on real data and on named edge cases."""
from __future__ import annotations

import csv
import json
import sys

import pytest
from rouge import Rouge
from rouge_score import rouge_scorer
from rouge_score.tokenize import tokenize as rs_default_tokenize

from conftest import run_cli, shared_file
from dialsum.scoring.metric import score_corpus
from dialsum.scoring.rouge import features, pair_scores, pairwise_matrix

# the `rouge` reference (pltrdy) reconstructs its LCS recursively, one frame per token of the longer text: the
# long edge cases need more than Python's default 1000 frames (in one process an earlier import of torch's inductor
# happened to raise the limit to 2000; on its own pytest worker this module must not depend on that)
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
from dialsum.scoring.tokenize import get_tokenizer, latin_tokenize

TOL = 1e-12
MECAB = get_tokenizer("mecab")


class _MecabForRougeScore:
    def tokenize(self, text):
        return list(MECAB(text))


RS = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_MecabForRougeScore())
PL = Rouge()


def ref_rouge_score(hyp: str, ref: str, scorer=RS):
    s = scorer.score(ref, hyp)
    return s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure


def ref_pltrdy(hyp: str, ref: str, tok=MECAB):
    h, r = " ".join(tok(hyp)), " ".join(tok(ref))
    try:
        s = PL.get_scores(h, r)[0]
    except (ValueError, RecursionError) as e:
        if "empty" in str(e).lower() or "at least 1" in str(e):
            return 0.0, 0.0, 0.0
        raise
    return s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"]


REFERENCE = {"rouge-score": ref_rouge_score, "pltrdy": ref_pltrdy}


def reference_corpus(preds, refs, semantics, pair=None):
    """Independent corpus score: library per (pred, ref), mean over refs, mean over samples."""
    pair = pair or REFERENCE[semantics]
    per = []
    for p, rs in zip(preds, refs):
        s = [pair(p, r) for r in rs]
        per.append([sum(x[m] for x in s) / len(s) for m in range(3)])
    return [sum(x[m] for x in per) / len(per) for m in range(3)]


def read(path, key="fname"):
    with open(path, encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    k = key if key in rows[0] else "id"
    return {r[k]: r["summary"] for r in rows}


@pytest.mark.parametrize("semantics", ["rouge-score", "pltrdy"])
def test_dev_kobart_single_reference_matches_library(semantics):
    dev = read(shared_file("ko/dev_200.csv"))
    pred = read(shared_file("ko/dev_200_kobart_predictions.csv"))
    names = list(dev)
    preds = [pred[f] for f in names]
    refs = [[dev[f]] for f in names]
    got = score_corpus(preds, refs, semantics)
    want = reference_corpus(preds, refs, semantics)
    assert [got.rouge1, got.rouge2, got.rougeL] == pytest.approx(want, abs=TOL)
    for p, (r,), ps in zip(preds, refs, got.per_sample):
        assert ps == pytest.approx(REFERENCE[semantics](p, r), abs=TOL)
    assert 0.2 < got.rouge1 < 0.8  # Hangul really counted (rouge-score's default tokenizer would give 0)


@pytest.mark.parametrize("semantics", ["rouge-score", "pltrdy"])
def test_multi_reference_three_peers_as_references_for_a_fourth(semantics):
    d = shared_file("ko/peer_test_predictions")
    files = ["AIBootcamp16_nlp-3__output_baseline.csv", "AIBootcamp16_nlp-3__output_preprocessed_v1.csv",
             "AIBootcamp14_nlp-1__submission_exp7a.csv", "Bkankim__output.csv"]
    tables = [read(d / f) for f in files]
    names = list(tables[3])[:150]
    preds = [tables[3][f] for f in names]
    refs = [[t[f] for t in tables[:3]] for f in names]
    got = score_corpus(preds, refs, semantics)
    want = reference_corpus(preds, refs, semantics)
    assert [got.rouge1, got.rouge2, got.rougeL] == pytest.approx(want, abs=TOL)
    assert got.final == pytest.approx(sum(want) / 3 * 100, abs=1e-9)


EDGE = {
    "empty": ("", "#Person1#은 내일 병원에 간다."),
    "identical": ("#Person1#은 내일 병원에 간다.", "#Person1#은 내일 병원에 간다."),
    "one_token": ("네", "네"),
    "one_token_vs_many": ("병원", "#Person1#은 내일 병원에 간다."),
    "repeated_tokens": ("좋아 좋아 좋아 좋아 좋아 좋아", "좋아 정말 좋아 좋아"),
    "punctuation_only": ("...!?", "#Person2#는 동의한다."),
    "latin_names": ("Tom과 Emma는 Starbucks에서 만나기로 했다.", "Emma는 Tom에게 Starbucks에서 보자고 한다."),
    "person_tags": ("#Person1# 은 #Person2# 에게 사과한다.", "#Person1#은 #Person2#에게 사과하고 #Person2#는 받아들인다."),
    "multi_sentence": ("민수는 병원에 간다. 의사는 약을 준다. 민수는 집에 간다.", "의사는 민수에게 약을 준다. 민수는 병원에 간다."),
    "very_long": (" ".join(["#Person1#은 회의 시간을 오후 3시로 옮기자고 제안하고"] * 40) + ".",
                  " ".join(["#Person2#는 고객 미팅 때문에 한 시간 뒤로 정한다"] * 30) + "."),
}


@pytest.mark.parametrize("semantics", ["rouge-score", "pltrdy"])
@pytest.mark.parametrize("case", sorted(EDGE))
def test_named_edge_cases(case, semantics):
    hyp, ref = EDGE[case]
    got = pair_scores(features(MECAB(hyp), semantics), features(MECAB(ref), semantics))
    assert got == pytest.approx(REFERENCE[semantics](hyp, ref), abs=TOL)
    if case == "identical" and semantics == "rouge-score":
        assert got == (1.0, 1.0, 1.0)
    if case == "empty":
        assert got == (0.0, 0.0, 0.0)


def test_english_multi_reference_with_rouge_scores_own_tokenizer():
    path = shared_file("en/dialogsum_test_multiref_100.csv")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # hypothesis: reference 1; references: 2 and 3 (a real multi-reference setting)
    preds = [r["summary1"] for r in rows]
    refs = [[r["summary2"], r["summary3"]] for r in rows]
    assert latin_tokenize("Hello, World! 안녕 42") == tuple(rs_default_tokenize("Hello, World! 안녕 42", None))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    got = score_corpus(preds, refs, "rouge-score", tokenizer="latin")
    want = reference_corpus(preds, refs, "rouge-score", lambda p, r: ref_rouge_score(p, r, scorer))
    assert [got.rouge1, got.rouge2, got.rougeL] == pytest.approx(want, abs=TOL)
    got_pl = score_corpus(preds, refs, "pltrdy", tokenizer="latin")
    want_pl = reference_corpus(preds, refs, "pltrdy", lambda p, r: ref_pltrdy(p, r, latin_tokenize))
    assert [got_pl.rouge1, got_pl.rouge2, got_pl.rougeL] == pytest.approx(want_pl, abs=TOL)
    assert 0.3 < got_pl.rouge1 < 0.9


@pytest.mark.parametrize("semantics", ["rouge-score", "pltrdy"])
def test_pairwise_matrix_equals_per_pair_path(semantics):
    d = shared_file("ko/peer_test_predictions")
    tables = [read(p) for p in sorted(d.glob("*.csv")) if p.name != "MANIFEST.csv"]
    for fname in list(tables[0])[:25]:
        feats = [features(MECAB(t.get(fname, "")), semantics) for t in tables]
        m = pairwise_matrix(feats, semantics)
        for i in range(len(feats)):
            for j in range(len(feats)):
                assert tuple(m[i, j]) == pair_scores(feats[i], feats[j])  # exact, not approximate
        if semantics == "rouge-score":
            assert (m == m.transpose(1, 0, 2)).all()


def test_score_cli_json_and_errors(tmp_path):
    dev = shared_file("ko/dev_200.csv")
    pred = shared_file("ko/dev_200_kobart_predictions.csv")
    r = run_cli("score", "--pred", str(pred), "--refs", str(dev), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"rouge1", "rouge2", "rougeL", "final"}
    with open(pred, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    d = read(dev)
    want = reference_corpus([x["summary"] for x in rows], [[d[x["fname"]]] for x in rows], "pltrdy")
    assert out["final"] == pytest.approx(sum(want) / 3 * 100, abs=1e-9)
    # missing fnames are named
    short = tmp_path / "short.csv"
    with open(short, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "summary"])
        for x in rows[:-2]:
            w.writerow([x["fname"], x["summary"]])
        w.writerow([rows[-2]["fname"], "nan"])
    r = run_cli("score", "--pred", str(short), "--refs", str(dev))
    assert r.returncode == 2 and rows[-1]["fname"] in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("semantics", ["rouge-score", "pltrdy"])
def test_pairwise_many_equals_one_list_at_a_time(semantics):
    """Lists of different sizes (empty ones, empty texts, copies) in one call give each list's own matrix."""
    from dialsum.scoring.rouge import features_many, get_semantics

    d = shared_file("ko/peer_test_predictions")
    tables = [read(p) for p in sorted(d.glob("*.csv")) if p.name != "MANIFEST.csv"]
    fnames = list(tables[0])[:40]
    groups = [[t.get(f, "") for t in tables[: 1 + i % 12]] for i, f in enumerate(fnames)]
    groups += [[], [""], ["", "같은 요약이다."], ["같은 요약이다.", "같은 요약이다."]]
    texts = list(dict.fromkeys(t for g in groups for t in g))
    feats = dict(zip(texts, features_many([MECAB(t) for t in texts], semantics)))
    sem = get_semantics(semantics)
    many = sem.pairwise_many([[feats[t] for t in g] for g in groups])
    for g, m in zip(groups, many):
        one = pairwise_matrix([feats[t] for t in g], semantics)
        assert m.shape == (len(g), len(g), 3) and (m == one).all()
        for i in range(len(g)):
            for j in range(len(g)):
                assert tuple(m[i, j]) == pair_scores(feats[g[i]], feats[g[j]])


def test_more_bigrams_than_characters_falls_back_to_integer_keys(monkeypatch):
    """When a batch's distinct bigrams outnumber the code points, bigrams become sorted integer keys: same scores."""
    from dialsum.scoring import codes

    texts = ["가 나 다 라 마 바 사 아 자 차", "차 자 아 사 바 마 라 다 나 가", "가 다 마 사 자 나 라 바 아 차 가 나",
             "나 가 라 다 바 마 아 사 차 자"]
    toks = [tuple(t.split()) for t in texts]
    want = [pairwise_matrix(features_many_rs(toks), "rouge-score"), pairwise_matrix(features_many_pl(toks), "pltrdy")]
    monkeypatch.setattr(codes, "USABLE", 12)  # 10 distinct tokens fit, ~30 distinct bigrams do not
    fs = features_many_rs(toks)
    assert isinstance(fs[0].bigrams, list) and isinstance(fs[0].unigrams, str)
    assert (pairwise_matrix(fs, "rouge-score") == want[0]).all()
    assert (pairwise_matrix(features_many_pl(toks), "pltrdy") == want[1]).all()
    with pytest.raises(ValueError, match="distinct tokens"):
        features_many_rs([tuple(f"w{i}" for i in range(20))])


def features_many_rs(toks):
    from dialsum.scoring.rouge import features_many

    return features_many(toks, "rouge-score")


def features_many_pl(toks):
    from dialsum.scoring.rouge import features_many

    return features_many(toks, "pltrdy")


def test_pltrdy_python_fallback_equals_the_compiled_kernel():
    """Without numba the union-LCS loop runs in Python: bit-identical matrices."""
    from dialsum.scoring.rouge import PltrdySemantics, features_many

    d = shared_file("ko/peer_test_predictions")
    tables = [read(p) for p in sorted(d.glob("*.csv")) if p.name != "MANIFEST.csv"]
    compiled, python = PltrdySemantics(), PltrdySemantics(compiled=False)
    assert python.kernel is None and compiled.kernel is not None
    for fname in list(tables[0])[:15]:
        texts = [t.get(fname, "") for t in tables]
        feats = features_many([MECAB(t) for t in texts], "pltrdy")
        assert (compiled.pairwise(feats) == python.pairwise(feats)).all()


def test_dense_ranks_equal_numpy_unique_on_both_paths():
    import numpy as np

    from dialsum.scoring.codes import dense_ranks

    keys = np.random.default_rng(0).integers(0, 5000, 20000).astype(np.uint32)
    uniq, inverse = np.unique(keys, return_inverse=True)
    for size in (5000, 1 << 62):  # packed sort; key and position too wide to pack: np.unique itself
        n, ranks = dense_ranks(keys, size)
        assert n == len(uniq) and (ranks == inverse).all()
