#!/usr/bin/env python3
"""The Python peer of `embedlab bench oiv7`: the same Open Images V7 load with pandas.

Reads the files `embedlab bench oiv7 --dir DIR` generated (labels-ROWS.csv, classes.csv,
narratives-ROWS.jsonl) the way a pandas script would: the labels CSV with only the three used
columns, rows with Confidence 1, label ids mapped to display names, each image's sorted label set,
label sets rarer than 2 dropped; with --narratives also each image's narrative captions (images
without one dropped first). Prints the load time and the peak RSS (ru_maxrss) of the process.

Usage (from the repo root, after `embedlab bench oiv7 --rows N --dir DIR`):
  python bench/oiv7_labels_pandas.py DIR --rows N [--narratives]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--narratives", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    classes = pd.read_csv(os.path.join(args.dir, "classes.csv"), dtype=str)
    names = dict(zip(classes["LabelName"], classes["DisplayName"]))
    labels = pd.read_csv(
        os.path.join(args.dir, f"labels-{args.rows}.csv"),
        usecols=["ImageID", "LabelName", "Confidence"],
        dtype={"ImageID": str, "LabelName": str, "Confidence": float},
    )
    images = pd.unique(labels["ImageID"])
    positive = labels[labels["Confidence"] == 1]
    label_sets = (
        positive.assign(name=positive["LabelName"].map(names))
        .groupby("ImageID", sort=False)["name"]
        .agg(lambda names: tuple(sorted(set(names))))
    )
    del labels, positive
    captions: dict[str, list[str]] = {}
    if args.narratives:
        with open(os.path.join(args.dir, f"narratives-{args.rows}.jsonl"), encoding="utf-8") as f:
            for line in f:
                narrative = json.loads(line)
                captions.setdefault(narrative["image_id"], []).append(narrative["caption"])
        label_sets = label_sets[label_sets.index.isin(list(captions))]
    counts = label_sets.value_counts()
    kept = label_sets[label_sets.map(counts) >= 2]
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"pandas {pd.__version__}: {args.rows} rows, {len(images)} images, "
        f"{'with' if args.narratives else 'without'} narratives: {len(kept)} samples in "
        f"{kept.nunique()} label sets; {seconds:.2f} s, peak RSS {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
