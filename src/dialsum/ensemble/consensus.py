"""Fitting the consensus on rows with references: which sources vote, with what weights, and how much a source's
own quality counts, so the ensemble beats its best member on rows it never saw.

The rule (a generalisation of plain MBR): for dialogue d, candidate i from source s(i),

    score(i) = sum_{j != i} w_{s(j)} U(i, j) / sum_{j != i} w_{s(j)}  +  beta * q_{s(i)}

U is the utility (mean of the R1/R2/RL F1 matrices by default), w_s >= 0 a source weight (0 = not a member:
neither voter nor candidate) and q_s the source's quality on the fitting rows, centred. The search space is small
on purpose, because 150-250 rows overfit anything richer: members are the top-k sources by fitting-row quality, their
weights q_s^gamma (normalised), and beta; (k, gamma, beta) maximise the fitting rows' score, ties to the simplest.
`cross_validate` judges the whole procedure on rows it did not fit (k-fold), next to the best single source chosen
the same way, the uniform consensus and the per-dialogue oracle. Everything here is pure: arrays in, numbers out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

import numpy as np

from dialsum.scoring.bootstrap import kfold as folds, one_se_gain
from dialsum.scoring.rouge import get_semantics
from dialsum.scoring.tokenize import tokenize_many

GAMMAS = (0.0, 1.0, 2.0, 4.0)
BETAS = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6)

UTILITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda m: m.mean(axis=2),
    "rouge1": lambda m: m[:, :, 0],
    "rouge2": lambda m: m[:, :, 1],
    "rougeL": lambda m: m[:, :, 2],
}


@dataclass
class CandidateSet:
    """One dialogue's candidates: unique-text utility matrix and, where references exist, each text's true score."""
    fname: str
    texts: list[str]           # candidates in input order (copies kept)
    sources: np.ndarray        # int source index per candidate
    util: np.ndarray           # [k, k] U(i, j), hypothesis i against j
    truth: np.ndarray | None   # [k] leaderboard per-dialogue score (0-1) against the references


@dataclass(frozen=True)
class Voting:
    """Who votes and how much: per-source weights (0 = out), and the quality prior's strength (the consensus rule)."""
    weights: tuple[float, ...]
    beta: float = 0.0
    prior: tuple[float, ...] = ()   # centred source quality on the fitting rows
    name: str = "uniform"

    def scores(self, d: CandidateSet) -> np.ndarray:
        w = np.asarray(self.weights)[d.sources]
        member = w > 0
        num = d.util @ w - np.diag(d.util) * w
        den = w.sum() - w
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(den > 0, num / den, 0.0)
        if self.beta and len(self.prior):
            s = s + self.beta * np.asarray(self.prior)[d.sources]
        return np.where(member, s, -np.inf)

    def pick(self, d: CandidateSet) -> int:
        return self.pick_scored(d)[0]

    def pick_scored(self, d: CandidateSet) -> tuple[int, np.ndarray]:
        """(the chosen candidate, every candidate's score): the earliest within 1e-9 of the best wins."""
        s = self.scores(d)
        best = int(np.argmax(s))
        if not np.isfinite(s[best]):  # no member has a candidate here: fall back to input order
            return 0, s
        return int(np.flatnonzero(s >= s[best] - 1e-9)[0]), s


def prepare(groups: dict[str, list[tuple[str, str]]], sources: list[str], semantics: str, tokenizer: str = "mecab",
            refs: dict[str, list[str]] | None = None, utility: str = "mean", workers: int = 1) -> list[CandidateSet]:
    """Tokenise every distinct text once, then per dialogue the utility matrix and (with refs) true scores."""
    sem = get_semantics(semantics)
    util_fn = UTILITIES[utility]
    refs = refs or {}
    texts = list(dict.fromkeys([t for c in groups.values() for t, _ in c] + [r for rs in refs.values() for r in rs]))
    feats = dict(zip(texts, sem.features_many(tokenize_many(texts, tokenizer, workers=workers))))
    feat = feats.__getitem__

    index = {s: i for i, s in enumerate(sources)}
    texts_of = [[t for t, _ in cands] for cands in groups.values()]
    uniques = [list(dict.fromkeys(ts)) for ts in texts_of]
    matrices = sem.pairwise_many([[feat(t) for t in uniq] for uniq in uniques])
    out = []
    for (fname, cands), ts, uniq, m in zip(groups.items(), texts_of, uniques, matrices):
        u = util_fn(m)
        pos = None
        if len(uniq) < len(ts):  # copies share their text's row and column
            where = {t: i for i, t in enumerate(uniq)}
            pos = [where[t] for t in ts]
            u = u[np.ix_(pos, pos)]
        truth = None
        if fname in refs:
            rf = [feat(r) for r in refs[fname]]
            truth = np.array([[np.mean(sem.pair(feat(t), r)) for r in rf] for t in uniq]).mean(axis=1)
            if pos is not None:
                truth = truth[pos]
        out.append(CandidateSet(fname, ts, np.array([index[s] for _, s in cands]), u, truth))
    return out


def evaluate(rule: Voting, dialogues: Sequence[CandidateSet]) -> float:
    """Mean true score (x100, the leaderboard's scale) of the rule's picks."""
    if not dialogues:
        return 0.0
    return 100.0 * float(np.mean([d.truth[rule.pick(d)] for d in dialogues]))


def source_quality(dialogues: Sequence[CandidateSet], n_sources: int) -> np.ndarray:
    """Mean true score of each source's candidates over the rows (x100); -inf where a source has none."""
    tot, cnt = np.zeros(n_sources), np.zeros(n_sources)
    for d in dialogues:
        np.add.at(tot, d.sources, d.truth)
        np.add.at(cnt, d.sources, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cnt > 0, 100.0 * tot / cnt, -np.inf)


def single(source: int, n_sources: int) -> Voting:
    w = [0.0] * n_sources
    w[source] = 1.0
    return Voting(tuple(w), name=f"single:{source}")


@dataclass
class Fit:
    rule: Voting
    fit_score: float
    best_single: int
    best_single_score: float
    uniform_score: float
    quality: list[float]
    candidates_tried: int
    fell_back: bool = False
    params: dict = field(default_factory=dict)


def fit(dialogues: Sequence[CandidateSet], n_sources: int) -> Fit:
    """Search (k, gamma, beta) on the given rows; fall back to the best single source if nothing beats it."""
    q = source_quality(dialogues, n_sources)
    order = [int(i) for i in np.argsort(-q, kind="stable") if np.isfinite(q[i])]
    best_single = order[0]
    single_score = evaluate(single(best_single, n_sources), dialogues)
    uniform = Voting(tuple(1.0 if np.isfinite(q[i]) else 0.0 for i in range(n_sources)))
    qc = np.where(np.isfinite(q), q, 0.0) / 100.0
    best: tuple[float, int, Voting, dict] | None = None
    tried = 0
    for k in range(2, len(order) + 1):
        members = order[:k]
        prior = qc - qc[members].mean()
        for gamma in GAMMAS:
            w = np.zeros(n_sources)
            w[members] = np.maximum(qc[members], 1e-6) ** gamma
            w[members] /= w[members].max()
            for beta in BETAS:
                rule = Voting(tuple(float(x) for x in w), beta, tuple(float(x) for x in prior),
                            f"top{k}-gamma{gamma:g}-beta{beta:g}")
                s = evaluate(rule, dialogues)
                tried += 1
                complexity = k + (gamma > 0) + (beta > 0)  # ties go to the simplest rule
                if best is None or s > best[0] + 1e-9 or (abs(s - best[0]) <= 1e-9 and complexity < best[1]):
                    best = (s, complexity, rule, {"k": k, "gamma": gamma, "beta": beta,
                                                  "members": members})
    if best is None or best[0] <= single_score + 1e-9:
        rule = single(best_single, n_sources)
        return Fit(rule, single_score, best_single, single_score, evaluate(uniform, dialogues), q.tolist(), tried,
                   fell_back=True, params={"k": 1, "gamma": 0.0, "beta": 0.0, "members": [best_single]})
    return Fit(best[2], best[0], best_single, single_score, evaluate(uniform, dialogues), q.tolist(), tried,
               params=best[3])


class Method(str, Enum):
    """What the ensemble chose to submit (its value is what reports and fit.json say)."""
    FITTED = "fitted consensus"
    WEIGHTED = "weighted consensus"  # the configured source weights, kept by the guard
    UNIFORM = "uniform consensus"
    BEST_SINGLE = "best single source"


def choose(f: Fit, cv: dict | None, n_sources: int) -> tuple[Voting, Method, str]:
    """Which rule to use, by the held-out folds and the one-standard-error rule: the simplest of (best single source,
    uniform consensus, fitted consensus) whose k-fold score is within one standard error (of the paired per-row
    differences) of the best one. Small dev sets thus keep the simple choice unless the gain is clear. Without a
    k-fold estimate, the fit's own choice."""
    uniform = Voting(tuple(1.0 for _ in range(n_sources)))
    if cv is None:
        return f.rule, (Method.BEST_SINGLE if f.fell_back else Method.FITTED), "fitting rows"
    m = one_se_choice(cv["per_row"])
    rules = {"best_single": (single(f.best_single, n_sources), Method.BEST_SINGLE),
             "uniform": (uniform, Method.UNIFORM), "fitted": (f.rule, Method.FITTED)}
    rule, name = rules[m]
    return rule, name, "k-fold estimate, one-standard-error rule"


def one_se_choice(per_row: dict[str, Sequence[float]]) -> str:
    """The simplest of best_single, uniform, fitted whose held-out mean is within one standard error (of the paired
    per-row differences) of the best one."""
    per = {m: np.asarray(per_row[m]) for m in ("best_single", "uniform", "fitted")}
    best = max(per, key=lambda m: per[m].mean())
    for m in ("best_single", "uniform", "fitted"):  # simplest first
        if not one_se_gain(per[best] - per[m]).keep:
            return m
    return best


def guard_fixed(dialogues: Sequence[CandidateSet], n_sources: int, weighted: Voting, k: int = 5,
                seeds: Sequence[int] = (0, 1, 2)) -> tuple[Fit, dict | None]:
    """Fixed weights (e.g. tuned ones) judged like a fit, so they cannot sneak past the guard: k-fold on the rows
    with references, the weighted rule (nothing to fit) against the best single source chosen on the other folds and
    the uniform consensus. Returns the Fit-shaped record of the weighted rule and the cross-validation table."""
    d = [x for x in dialogues if x.truth is not None]
    q = source_quality(d, n_sources)
    best_single = int(np.argmax(np.where(np.isfinite(q), q, -np.inf)))
    uni = Voting(tuple(1.0 for _ in range(n_sources)))
    f = Fit(weighted, evaluate(weighted, d), best_single, evaluate(single(best_single, n_sources), d),
            evaluate(uni, d), q.tolist(), 1, params={"fixed_weights": True})
    if k < 2 or len(d) < 2 * k:
        return f, None
    rows: dict[str, list[float]] = {"fitted": [], "best_single": [], "uniform": [], "oracle": []}
    for seed in seeds:
        for held in folds(len(d), k, seed):
            held_set = set(held.tolist())
            train = [x for i, x in enumerate(d) if i not in held_set]
            qt = source_quality(train, n_sources)
            bs = single(int(np.argmax(np.where(np.isfinite(qt), qt, -np.inf))), n_sources)
            for name, rule in (("fitted", weighted), ("best_single", bs), ("uniform", uni)):
                rows[name] += [100.0 * float(d[i].truth[rule.pick(d[i])]) for i in held]
            rows["oracle"] += [100.0 * float(d[i].truth.max()) for i in held]
    cv = {key: float(np.mean(v)) for key, v in rows.items()} | {"folds": k, "repeats": len(seeds), "rows": len(d)}
    return f, cv | {"per_row": rows}


def cross_validate(dialogues: Sequence[CandidateSet], n_sources: int, k: int = 5, seeds: Sequence[int] = (0, 1, 2)) -> dict:
    """k-fold, repeated over seeds: fit on k-1 folds, judge the held-out fold. Returns mean held-out scores (x100) of
    the fitted rule, the best single source chosen on the fitting folds, the uniform consensus over every source, and
    the per-dialogue oracle."""
    d = [x for x in dialogues if x.truth is not None]
    rows: dict[str, list[float]] = {"fitted": [], "best_single": [], "uniform": [], "oracle": []}
    uni = Voting(tuple(1.0 for _ in range(n_sources)))
    for seed in seeds:
        for held in folds(len(d), k, seed):
            held_set = set(held.tolist())
            train = [x for i, x in enumerate(d) if i not in held_set]
            test = [d[i] for i in held]
            f = fit(train, n_sources)
            for name, rule in (("fitted", f.rule), ("best_single", single(f.best_single, n_sources)), ("uniform", uni)):
                rows[name] += [100.0 * float(x.truth[rule.pick(x)]) for x in test]
            rows["oracle"] += [100.0 * float(x.truth.max()) for x in test]
    out = {key: float(np.mean(v)) for key, v in rows.items()} | {"folds": k, "repeats": len(seeds), "rows": len(d)}
    return out | {"per_row": rows}


def report_dict(f: Fit, sources: list[str], cv: dict | None = None) -> dict:
    """The fitted choices as JSON: members and weights by source name, beta, scores on the fitting rows, CV."""
    return {
        "method": (Method.BEST_SINGLE if f.fell_back else Method.FITTED).value,  # `ensemble` may overrule by CV
        "fell_back_to_best_single": f.fell_back,
        "members": {sources[i]: f.rule.weights[i] for i in range(len(sources)) if f.rule.weights[i] > 0},
        "beta": f.rule.beta,
        "params": {k: v for k, v in f.params.items() if k != "members"},
        "prior": {sources[i]: p for i, p in enumerate(f.rule.prior)} if f.rule.prior else {},
        "fit_rows_score": f.fit_score,
        "fit_rows_best_single": {"source": sources[f.best_single], "score": f.best_single_score},
        "fit_rows_uniform": f.uniform_score,
        "source_quality": {sources[i]: q for i, q in enumerate(f.quality)},
        "rules_tried": f.candidates_tried,
        "cross_validation": cv,
    }


def rule_from_dict(d: dict, sources: list[str]) -> Voting:
    """Rebuild the chosen rule over (possibly reordered) sources from a fit report."""
    if d.get("method") == Method.UNIFORM:
        return Voting(tuple(1.0 for _ in sources))
    if d.get("method") == Method.BEST_SINGLE:
        w = tuple(1.0 if s == d["fit_rows_best_single"]["source"] else 0.0 for s in sources)
        return Voting(w, name="single")
    w = tuple(float(d["members"].get(s, 0.0)) for s in sources)
    prior = tuple(float(d.get("prior", {}).get(s, 0.0)) for s in sources)
    return Voting(w, float(d.get("beta", 0.0)), prior, d.get("method", "consensus"))


@dataclass(frozen=True)
class Pick:
    """The candidate chosen for one dialogue: its text, source, position among the dialogue's candidates, score."""
    fname: str
    text: str
    source: str
    index: int
    score: float


@dataclass
class EnsembleResult:
    """What `ensemble` chose: a pick per dialogue, the method and the fit report (None when nothing was fitted),
    the prepared dialogues, the source names in order, and the voting used."""
    picks: dict[str, Pick]
    method: Method
    report: dict | None
    dialogues: list[CandidateSet]
    sources: list[str]
    voting: Voting


def ensemble(groups: dict[str, list[tuple[str, str]]], semantics: str, tokenizer: str = "mecab",
             fit_refs: dict[str, list[str]] | None = None, weights: dict[str, float] | None = None,
             cv_folds: int = 5, utility: str = "mean", workers: int = 1, guard: bool = False) -> EnsembleResult:
    """Consensus over every fname of `groups`. With `fit_refs`, the voting is fitted on those fnames only (and its
    k-fold estimate computed there); with `fit_refs`, `weights` and `guard`, the given weights are not refitted but
    judged the same way (`guard_fixed`: the one-SE rule may fall back to the best single source or the uniform
    consensus); otherwise plain MBR with the given source weights (1 by default)."""
    sources = list(dict.fromkeys(s for c in groups.values() for _, s in c))
    refs = {f: r for f, r in (fit_refs or {}).items() if f in groups}
    dialogues = prepare(groups, sources, semantics, tokenizer, refs, utility, workers)
    report = None
    if refs:
        fitting = [d for d in dialogues if d.truth is not None]
        if weights and guard:
            f, cv = guard_fixed(fitting, len(sources), Voting(tuple(source_weight(s, weights) for s in sources)),
                                cv_folds)
        else:
            f = fit(fitting, len(sources))
            cv = (cross_validate(fitting, len(sources), cv_folds, (0,))
                  if cv_folds > 1 and len(fitting) >= 2 * cv_folds else None)
        voting, method, chosen_by = choose(f, cv, len(sources))
        if weights and guard and method is Method.FITTED:
            method = Method.WEIGHTED
        report = report_dict(f, sources, {k: v for k, v in cv.items() if k != "per_row"} if cv else None)
        report["method"], report["chosen_by"] = method.value, chosen_by
    else:
        voting = Voting(tuple(source_weight(s, weights or {}) for s in sources))
        method = Method.WEIGHTED if weights else Method.UNIFORM
    picks = {}
    for d in dialogues:
        i, scores = voting.pick_scored(d)
        picks[d.fname] = Pick(d.fname, d.texts[i], sources[d.sources[i]], i, float(scores[i]))
    return EnsembleResult(picks, method, report, dialogues, sources, voting)


def source_weight(source: str, weights: dict[str, float]) -> float:
    """A source's weight from a `source=weight` map: its own entry, else its model's (`model/decoding` -> model),
    else 1."""
    if source in weights:
        return weights[source]
    return weights.get(source.split("/", 1)[0], 1.0)


SCORE_COLUMNS = ["fname", "source", "text", "utility", "chosen"]


def score_rows(res: EnsembleResult) -> list[list]:
    """Every candidate with its source, its score under the voting used (blank: not a member), and whether chosen."""
    rows = []
    for d in res.dialogues:
        sc = res.voting.scores(d)
        for i, text in enumerate(d.texts):
            rows.append([d.fname, res.sources[d.sources[i]], text, f"{sc[i]:.12f}" if np.isfinite(sc[i]) else "",
                         int(res.picks[d.fname].index == i)])
    return rows
