#!/usr/bin/env python3
"""Peer for `embedlab bench knn`: exact self-k-NN with faiss-cpu `IndexFlatIP`.

What one timed run measures, on the float32 (n, d) matrix of --vectors (rows L2-normalised, so
inner product = cosine similarity):

  1. build: `faiss.IndexFlatIP(d)` and `index.add(V)` (all n rows);
  2. search: `index.search(V, k + 1)`: every row queries all rows, exactly (faiss computes the
     n x n inner products by BLAS SGEMM in blocks and keeps the top k + 1 per query);
  3. self-removal: per query, its own row index is removed from the k + 1 results if it is among
     them, otherwise the last (k + 1-th) result is dropped, leaving n x k neighbour indices
     (best first).

All three together make one run (the search dominates). One untimed warm-up run, then --repeat
timed runs (time.perf_counter); the JSON has every run's seconds and their median, and
`gflops` = 2 * n * n * d / median / 1e9 (the multiply-adds of the full n x n score matrix, the same
formula `embedlab bench knn` uses).

With --neighbours OURS.npy (uint32 or int64, shape n x k: embedlab's neighbours for the same
vectors), the faiss result of the last run is compared with it, as "agreement":
  identical  fraction of queries whose k indices are the same ordered list;
  recall     mean over queries of |ours ∩ faiss| / k (set overlap).
(Ties and last-bit differences of float32 scores account for small disagreements.)

--sgemm N is a separate helper mode: it times a plain square float32 matrix product A @ B
(N x N, numpy's BLAS, e.g. OpenBLAS) with the same warm-up/repeat scheme and reports GFLOP/s =
2 * N^3 / median / 1e9: the machine's "BLAS peak" reference at this thread count.

Threads: --threads (default 2) is written to OMP_NUM_THREADS, MKL_NUM_THREADS and
OPENBLAS_NUM_THREADS before numpy/faiss are imported, and faiss.omp_set_num_threads is called.

Usage:
  python bench/peers/knn_faiss.py --vectors V.npy [--neighbours OURS.npy] [--k 10] \
      [--threads 2] [--repeat 5] [--json OUT.json]
  python bench/peers/knn_faiss.py --sgemm 4096 [--threads 2] [--repeat 5] [--json OUT.json]

JSON (k-NN mode):
  {"mode": "knn", "n": 2000, "d": 384, "k": 10, "threads": 2, "seconds": [...], "median": 0.05,
   "gflops": 61.4, "peer": {"name": "faiss-cpu", "version": "1.15.1", "compile_options": "..."},
   "index": "IndexFlatIP", "agreement": {"identical": 0.999, "recall": 0.9999}}
JSON (--sgemm mode):
  {"mode": "sgemm", "size": 4096, "threads": 2, "seconds": [...], "median": 1.2, "gflops": 114.5,
   "peer": {"name": "numpy", "version": "2.4.6", "blas": "scipy-openblas 0.3.31..."}}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--vectors", type=Path, help="float32 (n, d) .npy, rows L2-normalised")
    mode.add_argument("--sgemm", type=int, metavar="N", help="time a plain N x N float32 A @ B instead")
    ap.add_argument("--neighbours", type=Path, help="our neighbours (n, k) .npy (uint32 or int64) to compare")
    ap.add_argument("--k", type=int, default=10, help="neighbours per query, self excluded (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="threads for faiss/BLAS (default 2)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs after the warm-up (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def timed(fn, repeat: int, warmup: int = 1):
    """`warmup` untimed calls, then `repeat` timed calls; returns (seconds list, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def drop_self(found, k: int):
    """n x (k+1) search result -> n x k: remove each query's own index, else the last column."""
    import numpy as np

    n = found.shape[0]
    is_self = found == np.arange(n, dtype=found.dtype)[:, None]
    has_self = is_self.any(axis=1)
    drop = np.where(has_self, is_self.argmax(axis=1), k)
    keep = np.ones(found.shape, dtype=bool)
    keep[np.arange(n), drop] = False
    return found[keep].reshape(n, k)


def agreement(ours, theirs) -> dict:
    import numpy as np

    ours = ours.astype(np.int64, copy=False)
    identical = float((ours == theirs).all(axis=1).mean())
    k = ours.shape[1]
    overlap = np.zeros(ours.shape[0], dtype=np.int64)
    # Neighbour lists have no duplicates, so counting matches per row is the intersection size.
    for j in range(k):
        overlap += (ours == theirs[:, j:j + 1]).any(axis=1)
    return {"identical": identical, "recall": float((overlap / k).mean())}


def numpy_blas() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy
        return "unknown"


def main() -> int:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np

    if args.sgemm is not None:
        size = args.sgemm
        rng = np.random.default_rng(0)
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        seconds, _ = timed(lambda: a @ b, args.repeat, args.warmup)
        median = statistics.median(seconds)
        out = {"mode": "sgemm", "size": size, "threads": args.threads, "seconds": seconds, "median": median,
               "gflops": 2.0 * size ** 3 / median / 1e9,
               "peer": {"name": "numpy", "version": np.__version__, "blas": numpy_blas()}}
        print(f"numpy SGEMM {size}^3: {median:.4f} s median of {len(seconds)}, "
              f"{out['gflops']:.1f} GFLOP/s on {args.threads} threads")
    else:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        vectors = np.load(args.vectors)
        if vectors.ndim != 2:
            raise SystemExit(f"{args.vectors}: expected a 2-d array, got shape {vectors.shape}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        k = args.k
        if not 1 <= k < n:
            raise SystemExit(f"need 1 <= k < n (k = {k}, n = {n})")

        def run():
            index = faiss.IndexFlatIP(d)
            index.add(vectors)
            _, found = index.search(vectors, k + 1)
            return drop_self(found, k)

        seconds, neighbours = timed(run, args.repeat, args.warmup)
        median = statistics.median(seconds)
        out = {"mode": "knn", "n": n, "d": d, "k": k, "threads": args.threads, "seconds": seconds,
               "median": median, "gflops": 2.0 * n * n * d / median / 1e9,
               "peer": {"name": "faiss-cpu", "version": faiss.__version__,
                        "compile_options": faiss.get_compile_options().strip()},
               "index": "IndexFlatIP"}
        summary = (f"faiss IndexFlatIP self-{k}-NN n={n} d={d}: {median:.4f} s median of {len(seconds)}, "
                   f"{out['gflops']:.1f} GFLOP/s on {args.threads} threads")
        if args.neighbours is not None:
            ours = np.load(args.neighbours)
            if ours.shape != (n, k):
                raise SystemExit(f"{args.neighbours}: shape {ours.shape}, expected {(n, k)}")
            out["agreement"] = agreement(ours, neighbours)
            summary += (f"; agreement: identical {out['agreement']['identical']:.4f}, "
                        f"recall {out['agreement']['recall']:.4f}")
        print(summary)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
