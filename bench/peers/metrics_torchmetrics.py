#!/usr/bin/env python3
"""Peer for `embedlab bench metrics`: the eight retrieval metrics at cutoff k with torchmetrics.

Inputs: --neighbours N.npy, uint32 (n, k): per query (= row), its k neighbour row indices, best
first, the query itself excluded, no duplicates; --labels L.npy, uint32 (n,) or (n, 1): the
label-set id of every row. A neighbour is relevant iff labels[neighbour] == labels[query];
R(q) = (number of rows with labels == labels[q]) - 1, h(q) = relevant neighbours among the k.

The definitions reproduced (each value is the mean over all n queries; a query with R = 0, or
with h = 0, scores 0 on all of them):
  hit_rate@k   1 if h > 0 else 0
  precision@k  h / k
  recall@k     h / R
  mrr@k        1 / (rank of the first relevant neighbour), 0 if none
  map@k        (1 / min(k, R)) * sum over relevant ranks i of (hits among ranks 1..i) / i
  map_list@k   the same sum / h
  ndcg@k       DCG / IDCG, DCG = sum_i rel_i / log2(i + 1), IDCG = the DCG of min(k, R) relevant
               items at ranks 1..min(k, R)
  ndcg_list@k  DCG / (DCG of the same k flags sorted descending)

How torchmetrics is used (as a user would: the retrieval *module* classes with `indexes`, default
empty_target_action="neg", i.e. a query without any positive target scores 0):
  * preds: one descending score per retrieved slot, k - rank (k, k-1, ..., 1; all > 0, because
    torchmetrics 1.x zeroes the target of every entry whose pred is <= 0 in MRR, MAP, precision
    and recall); target: the relevance flags; indexes: the query number.
  * On the k retrieved entries only: RetrievalMRR, RetrievalPrecision, RetrievalHitRate,
    RetrievalNormalizedDCG (-> ndcg_list@k, its ideal is the retrieved flags sorted) and
    RetrievalMAP, all with top_k=k.
  * On the retrieved entries plus, per query, its R - h relevant-but-not-retrieved rows appended
    as extra entries with pred 0.5 (below every retrieved score, still > 0) and target 1, so
    torchmetrics sees all R relevant items: RetrievalRecall (-> h / R) and RetrievalNormalizedDCG
    (-> ndcg@k: the ideal DCG of min(k, R) ones); top_k=k keeps the extra entries out of the
    gains (they rank below all k retrieved entries and tie only among themselves, beyond k).
  * RetrievalMAP(top_k=k) averages precision@i over the *hits in the top k*, i.e. it divides the
    sum by h: that is map_list@k. map@k is derived from it with tensor ops: RetrievalMAP is run
    with a callable `aggregation` that returns the per-query values (in query order) instead of
    their mean; map_list@k = their mean and map@k = mean(ap * h / min(k, R)) (0 where R = 0).
Before timing, the script checks this recipe on a small hand-made example (every case: R = 0,
h = 0, R < k, R > k, hits at first/middle/last rank) against a plain-numpy implementation of the
definitions and against hand-computed values, and exits 1 if anything differs by > 1e-6; it also
checks the real input's 8 values against the numpy implementation (exit 1 if > 1e-5).

Timing: one untimed warm-up, then --repeat timed runs; each run goes from the numpy arrays to
the 8 means: tensor construction, relevance flags, R and h, the padding, and every metric's
update + compute. The JSON has every run's seconds and their median.

Threads: --threads (default 2) goes to OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS
(before numpy/torch are imported) and torch.set_num_threads.

With --expected OURS.json (an object "values" with the same keys, e.g. embedlab's), the largest
absolute difference over the 8 values is reported as "max_abs_diff"; exit 1 if it is > 1e-5.

Usage:
  python bench/peers/metrics_torchmetrics.py --neighbours N.npy --labels L.npy [--k 10] \
      [--threads 2] [--repeat 5] [--expected OURS.json] [--json OUT.json]
  python bench/peers/metrics_torchmetrics.py --self-test     # only the hand-made example

JSON:
  {"n": 100000, "k": 10, "threads": 2, "seconds": [...], "median": 31.2,
   "values": {"mrr@10": 0.41, "ndcg@10": ..., "ndcg_list@10": ..., "map@10": ..., "map_list@10": ...,
              "precision@10": ..., "recall@10": ..., "hit_rate@10": ...},
   "peer": {"name": "torchmetrics", "version": "1.9.0", "torch": "2.15.0"},
   "padded_entries": 1234567, "self_test": "passed", "numpy_reference_max_abs_diff": 3e-8,
   "max_abs_diff": 2e-8, "expected": "OURS.json"}      (the last two only with --expected)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

NAMES = ("mrr", "ndcg", "ndcg_list", "map", "map_list", "precision", "recall", "hit_rate")
TOLERANCE = 1e-5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neighbours", type=Path, help="uint32 (n, k) neighbour row indices per query")
    ap.add_argument("--labels", type=Path, help="uint32 (n,) or (n, 1) label-set id per row")
    ap.add_argument("--k", type=int, default=10, help="cutoff (default 10; the first k columns are used)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs after the warm-up (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--expected", type=Path, help='JSON with "values" to compare against (exit 1 if > 1e-5)')
    ap.add_argument("--json", type=Path, help="write the result here")
    ap.add_argument("--self-test", action="store_true", help="only run the hand-made example check")
    args = ap.parse_args()
    if not args.self_test and (args.neighbours is None or args.labels is None):
        ap.error("--neighbours and --labels are required (or --self-test)")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


# -- the definitions, in plain numpy --------------------------------------------------------------

def numpy_per_query(neighbours, labels, k: int) -> dict:
    """Per-query values of the 8 metrics, straight from the definitions (float64)."""
    import numpy as np

    nb = neighbours[:, :k].astype(np.int64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    big_r = counts[inverse.reshape(-1)] - 1
    rel = (labels[nb] == labels[:, None]).astype(np.float64)
    h = rel.sum(axis=1)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])  # ideal[m] = DCG of m ones at ranks 1..m
    m = np.minimum(big_r, k)
    first = rel.argmax(axis=1)
    ap_sum = (np.cumsum(rel, axis=1) / ranks * rel).sum(axis=1)
    dcg = (rel * discount).sum(axis=1)
    hi = h.astype(np.int64)
    safe = lambda x: np.maximum(x, 1)  # noqa: E731 (denominators where the value is 0 anyway)
    return {
        "mrr": np.where(h > 0, 1.0 / (first + 1.0), 0.0),
        "ndcg": np.where(m > 0, dcg / ideal[safe(m)], 0.0),
        "ndcg_list": np.where(h > 0, dcg / ideal[safe(hi)], 0.0),
        "map": np.where(m > 0, ap_sum / safe(m), 0.0),
        "map_list": np.where(h > 0, ap_sum / safe(h), 0.0),
        "precision": h / k,
        "recall": np.where(big_r > 0, h / safe(big_r), 0.0),
        "hit_rate": (h > 0).astype(np.float64),
    }


def numpy_values(neighbours, labels, k: int) -> dict:
    return {f"{name}@{k}": float(v.mean()) for name, v in numpy_per_query(neighbours, labels, k).items()}


# -- the torchmetrics recipe (what is timed) -------------------------------------------------------

def per_query(values, dim=None):
    """`aggregation` callable: keep the per-query values (one per query, in query order)."""
    return values


def torchmetrics_values(neighbours, labels, k: int) -> tuple[dict, int]:
    """The 8 means with torchmetrics' retrieval module classes; also the number of padded entries."""
    import numpy as np
    import torch
    from torchmetrics.retrieval import (RetrievalHitRate, RetrievalMAP, RetrievalMRR, RetrievalNormalizedDCG,
                                        RetrievalPrecision, RetrievalRecall)

    labels_t = torch.from_numpy(labels.astype(np.int64))
    nb = torch.from_numpy(np.ascontiguousarray(neighbours[:, :k]).astype(np.int64))
    n = nb.shape[0]
    target = labels_t[nb] == labels_t[:, None]                       # (n, k) relevance flags
    _, inverse, counts = torch.unique(labels_t, return_inverse=True, return_counts=True)
    big_r = counts[inverse] - 1                                        # R per query
    h = target.sum(dim=1)                                              # hits in the top k
    preds = (k - torch.arange(k, dtype=torch.float32)).expand(n, k)    # k, k-1, ..., 1
    indexes = torch.arange(n).unsqueeze(1).expand(n, k)

    p, t, i = preds.reshape(-1), target.reshape(-1), indexes.reshape(-1)
    # All R relevant items: the R - h relevant rows not retrieved, below every retrieved score.
    missing = big_r - h
    pad_index = torch.repeat_interleave(torch.arange(n), missing)
    pad = pad_index.numel()
    p_all = torch.cat([p, torch.full((pad,), 0.5)])
    t_all = torch.cat([t, torch.ones(pad, dtype=torch.bool)])
    i_all = torch.cat([i, pad_index])

    def run(metric, *inputs):
        metric.update(*inputs)
        return metric.compute()

    retrieved = (p, t, i)
    everything = (p_all, t_all, i_all)
    ap = run(RetrievalMAP(top_k=k, aggregation=per_query), *retrieved)  # per query: sum / h
    min_k_r = torch.clamp(big_r, max=k)
    values = {
        "mrr": run(RetrievalMRR(top_k=k), *retrieved),
        "ndcg": run(RetrievalNormalizedDCG(top_k=k), *everything),
        "ndcg_list": run(RetrievalNormalizedDCG(top_k=k), *retrieved),
        "map": torch.where(min_k_r > 0, ap * h / min_k_r.clamp(min=1), torch.zeros_like(ap)).mean(),
        "map_list": ap.mean(),
        "precision": run(RetrievalPrecision(top_k=k), *retrieved),
        "recall": run(RetrievalRecall(top_k=k), *everything),
        "hit_rate": run(RetrievalHitRate(top_k=k), *retrieved),
    }
    return {f"{name}@{k}": float(values[name]) for name in NAMES}, pad


# -- the hand-made example -------------------------------------------------------------------------

def self_test() -> None:
    """Hand-made example, k = 4: hand values == numpy definitions == torchmetrics recipe."""
    import numpy as np

    k = 4
    # rows 0-5: label 0 (R = 5 > k); rows 6-7: label 1 (R = 1 < k); rows 8, 9: singletons (R = 0).
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 3], dtype=np.uint32)
    neighbours = np.array([
        [6, 1, 8, 2],  # q0: hits at ranks 2, 4
        [0, 2, 3, 4],  # q1: hits at all ranks (h = 4 < R = 5)
        [9, 8, 7, 6],  # q2: no hit, R = 5
        [1, 9, 8, 2],  # q3: hits at ranks 1, 4
        [3, 2, 1, 0],  # q4: all hits
        [6, 7, 8, 0],  # q5: hit at rank 4 only
        [7, 0, 1, 2],  # q6: hit at rank 1 (R = 1)
        [0, 1, 2, 6],  # q7: hit at rank 4 (R = 1)
        [0, 1, 2, 3],  # q8: R = 0
        [8, 0, 1, 2],  # q9: R = 0
    ], dtype=np.uint32)
    d = 1.0 / np.log2(np.arange(2, 6))          # discounts of ranks 1..4
    idcg4, idcg2 = d.sum(), d[:2].sum()
    # Hand-computed per-query values for q0, q3, q5, q7 (the others are all-0 or all-1 cases).
    hand = {
        0: dict(mrr=1 / 2, ndcg=(d[1] + d[3]) / idcg4, ndcg_list=(d[1] + d[3]) / idcg2,
                map=(1 / 2 + 2 / 4) / 4, map_list=(1 / 2 + 2 / 4) / 2, precision=2 / 4, recall=2 / 5,
                hit_rate=1),
        3: dict(mrr=1, ndcg=(d[0] + d[3]) / idcg4, ndcg_list=(d[0] + d[3]) / idcg2,
                map=(1 + 2 / 4) / 4, map_list=(1 + 2 / 4) / 2, precision=2 / 4, recall=2 / 5, hit_rate=1),
        5: dict(mrr=1 / 4, ndcg=d[3] / idcg4, ndcg_list=d[3] / d[0], map=(1 / 4) / 4, map_list=1 / 4,
                precision=1 / 4, recall=1 / 5, hit_rate=1),
        7: dict(mrr=1 / 4, ndcg=d[3] / d[0], ndcg_list=d[3] / d[0], map=1 / 4, map_list=1 / 4,
                precision=1 / 4, recall=1, hit_rate=1),
        1: dict(mrr=1, ndcg=1, ndcg_list=1, map=1, map_list=1, precision=1, recall=4 / 5, hit_rate=1),
        6: dict(mrr=1, ndcg=1, ndcg_list=1, map=1, map_list=1, precision=1 / 4, recall=1, hit_rate=1),
    }
    hand.update({q: {name: 0.0 for name in NAMES} for q in (2, 8, 9)})
    hand[4] = hand[1]
    reference = numpy_per_query(neighbours, labels, k)
    problems = []
    for q, expected in hand.items():
        for name, value in expected.items():
            if abs(reference[name][q] - value) > 1e-12:
                problems.append(f"numpy definition q{q} {name}: {reference[name][q]} != hand {value}")
    means = {f"{name}@{k}": float(np.mean([hand[q][name] for q in range(10)])) for name in NAMES}
    got, _ = torchmetrics_values(neighbours, labels, k)
    for key, value in means.items():
        if abs(got[key] - value) > 1e-6:
            problems.append(f"torchmetrics {key}: {got[key]:.8f} != definition {value:.8f}")
    if problems:
        print("self-test FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        sys.exit(1)


def main() -> int:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch
    import torchmetrics

    torch.set_num_threads(args.threads)
    self_test()
    if args.self_test:
        print("self-test passed: torchmetrics recipe == numpy definitions == hand values (k = 4, 10 queries)")
        return 0

    neighbours = np.load(args.neighbours)
    labels = np.load(args.labels).reshape(-1)
    k = args.k
    if neighbours.ndim != 2 or neighbours.shape[0] != labels.shape[0] or not 1 <= k <= neighbours.shape[1]:
        raise SystemExit(f"shapes: neighbours {neighbours.shape}, labels {labels.shape}, k {k}")

    for _ in range(args.warmup):
        torchmetrics_values(neighbours, labels, k)
    seconds = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        values, pad = torchmetrics_values(neighbours, labels, k)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)

    reference = numpy_values(neighbours, labels, k)
    reference_diff = max(abs(values[key] - reference[key]) for key in values)
    out = {"n": int(neighbours.shape[0]), "k": k, "threads": args.threads, "seconds": seconds, "median": median,
           "values": values,
           "peer": {"name": "torchmetrics", "version": torchmetrics.__version__, "torch": torch.__version__},
           "padded_entries": pad, "self_test": "passed", "numpy_reference_max_abs_diff": reference_diff}
    failed = []
    if reference_diff > TOLERANCE:
        failed.append(f"numpy reference differs by {reference_diff:.2e}: {reference}")
    summary = (f"torchmetrics, 8 metrics, n={out['n']} k={k}: {median:.3f} s median of {len(seconds)}; "
               f"vs numpy definitions {reference_diff:.1e}")
    if args.expected is not None:
        expected = json.loads(args.expected.read_text())["values"]
        absent = [key for key in values if key not in expected]
        if absent:
            failed.append(f"{args.expected} lacks {absent}")
        diff = max((abs(values[key] - float(expected[key])) for key in values if key in expected), default=float("nan"))
        out["max_abs_diff"] = diff
        out["expected"] = str(args.expected)
        summary += f"; vs expected {diff:.1e}"
        if not diff <= TOLERANCE:
            failed.append(f"differs from {args.expected} by {diff:.2e}: expected {expected}, got {values}")
    print(summary)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if failed:
        print("error: " + "\n       ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
