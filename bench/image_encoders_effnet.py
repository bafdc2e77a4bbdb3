#!/usr/bin/env python3
"""Throughput of the Python peer for EfficientNet-Lite0: EfficientNet-PyTorch on PyTorch CPU.

The same model, weights and preprocessing as the Rust reference test
(plugins/candle/tests/make_efficientnet_reference.py: `lite0()` and `preprocess()` are imported
from there), on the first N `.jpg` files of a folder by name, read into memory once:

  end to end    PIL decode + resize/crop/normalise (numpy) + forward, batch by batch (decoding
                and preprocessing run in the main thread, as a plain loop does)
  forward only  the same batches, preprocessed beforehand

torch.set_num_threads(--threads) (default 2) with OMP/MKL thread variables set to the same. One
warm-up pass, then --runs timed passes (default 3); prints each and the median. Peak RSS
(ru_maxrss) at the end covers load + all runs.

Usage (from the repo root):
  python bench/image_encoders_effnet.py --weights PATH/efficientnet-lite0-57934424.pth \
      [--images ../shared/data/coco-sample/images] [--n 200] [--batch 32] [--threads 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=REPO_ROOT.parent / "shared/data/coco-sample/images")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location(
        "reference", REPO_ROOT / "plugins/candle/tests/make_efficientnet_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)

    paths = sorted(args.images.glob("*.jpg"))[: args.n]
    jpegs = [p.read_bytes() for p in paths]
    start = time.perf_counter()
    model = reference.lite0(args.weights)
    print(f"loaded in {time.perf_counter() - start:.2f}s; {len(jpegs)} images, batch {args.batch}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    chunks = [jpegs[i:i + args.batch] for i in range(0, len(jpegs), args.batch)]

    def features(pixels):
        with torch.no_grad():
            return model.extract_features(pixels).mean(dim=(2, 3))

    def end_to_end():
        for chunk in chunks:
            batch = np.stack([reference.preprocess(io.BytesIO(b)) for b in chunk])
            features(torch.from_numpy(batch))

    batches = [torch.from_numpy(np.stack([reference.preprocess(io.BytesIO(b)) for b in chunk]))
               for chunk in chunks]

    def forward_only():
        for pixels in batches:
            features(pixels)

    for name, run in (("end to end", end_to_end), ("forward only", forward_only)):
        run()
        rates = []
        for i in range(1, args.runs + 1):
            start = time.perf_counter()
            run()
            secs = time.perf_counter() - start
            rates.append(len(jpegs) / secs)
            print(f"{name} run {i}: {secs:.2f}s, {rates[-1]:.1f} images/s")
        print(f"{name}: median {statistics.median(rates):.1f} images/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
