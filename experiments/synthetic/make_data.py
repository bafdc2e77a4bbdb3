#!/usr/bin/env python3
"""Generates the quickstart dataset and its precomputed vectors (Python standard library only).

The samples are synthetic: each has a label set drawn from a fixed list with Zipf-like frequencies
and three captions written from templates that mention most (not always all) of its labels, plus
scene words shared across label sets. Two classic text encoders embed the concatenated captions:

- words.npy: TF-IDF weighted word unigrams and bigrams, feature-hashed (signed) into 256 dims;
- trigrams.npy: character trigrams, feature-hashed into 256 dims.

Everything is seeded, so the files are byte-for-byte reproducible:
    python3 experiments/synthetic/make_data.py
"""

import hashlib
import json
import math
import random
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_SAMPLES = 600
DIM = 256
SEED = 20261128

LABEL_SETS = [
    ["cat"], ["dog"], ["person"], ["person", "bicycle"], ["car"], ["pizza"], ["cup", "laptop"],
    ["bird"], ["boat"], ["clock"], ["dog", "person"], ["cat", "laptop"], ["person", "boat"],
    ["car", "person"], ["bird", "tree"], ["cup"], ["laptop"], ["pizza", "cup"], ["clock", "tree"],
    ["cat", "dog"], ["person", "pizza"], ["bicycle"], ["boat", "bird"], ["car", "tree"],
    ["person", "bicycle", "car"], ["dog", "tree"], ["cat", "cup"], ["person", "laptop", "cup"],
    ["bird", "boat", "person"], ["clock", "person"],
]
NOUNS = {
    "cat": ["cat", "kitten"], "dog": ["dog", "puppy"], "person": ["person", "man", "woman"],
    "bicycle": ["bicycle", "bike"], "car": ["car", "sedan"], "pizza": ["pizza", "slice of pizza"],
    "cup": ["cup", "mug"], "laptop": ["laptop", "computer"], "bird": ["bird", "seagull"],
    "boat": ["boat", "sailboat"], "clock": ["clock", "clock tower"], "tree": ["tree", "oak"],
}
ADJECTIVES = ["small", "large", "old", "red", "white", "black", "happy", "wet", "sunny", "quiet"]
SCENES = ["in a kitchen", "on a street", "near the water", "in a park", "at night", "on a table",
          "in the city", "by a window", "under a blue sky", "in a living room"]
TEMPLATES = ["a {adj} {a} {scene}", "there is a {a} and something else {scene}",
             "a photo of a {a} with a {b}", "{a} next to a {b} {scene}", "the {adj} {a} {scene}"]


def caption(rng, labels):
    mentioned = [l for l in labels if rng.random() > 0.2] or [rng.choice(labels)]
    nouns = [rng.choice(NOUNS[l]) for l in mentioned]
    a = nouns[0]
    b = nouns[1] if len(nouns) > 1 else rng.choice(["wall", "chair", "sign", "window"])
    return rng.choice(TEMPLATES).format(adj=rng.choice(ADJECTIVES), a=a, b=b, scene=rng.choice(SCENES))


def samples():
    rng = random.Random(SEED)
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(LABEL_SETS))]
    out = []
    for i in range(N_SAMPLES):
        labels = rng.choices(LABEL_SETS, weights)[0]
        out.append({"id": f"qs{i:04d}", "captions": [caption(rng, labels) for _ in range(3)],
                    "labels": sorted(labels)})
    return out


def bucket(feature):
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % DIM, 1.0 if (value >> 63) else -1.0


def hashed(features_per_doc, idf):
    rows = []
    for features in features_per_doc:
        row = [0.0] * DIM
        counts = {}
        for f in features:
            counts[f] = counts.get(f, 0) + 1
        for f, tf in counts.items():
            index, sign = bucket(f)
            row[index] += sign * (1.0 + math.log(tf)) * idf[f]
        rows.append(row)
    return rows


def idf_of(features_per_doc):
    df = {}
    for features in features_per_doc:
        for f in set(features):
            df[f] = df.get(f, 0) + 1
    n = len(features_per_doc)
    return {f: math.log((1 + n) / (1 + d)) + 1.0 for f, d in df.items()}


def words(text):
    tokens = text.lower().split()
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def trigrams(text):
    padded = f"  {text.lower()}  "
    return [padded[i:i + 3] for i in range(len(padded) - 2)]


def write_npy(path, rows):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (len(rows), DIM)
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin-1"))
        for row in rows:
            f.write(struct.pack(f"<{DIM}f", *row))


def main():
    data = samples()
    with open(HERE / "samples.jsonl", "w") as f:
        for s in data:
            f.write(json.dumps(s) + "\n")
    texts = [" ".join(s["captions"]) for s in data]
    ids = "".join(s["id"] + "\n" for s in data)
    for name, featurize in [("words", words), ("trigrams", trigrams)]:
        features = [featurize(t) for t in texts]
        write_npy(HERE / f"{name}.npy", hashed(features, idf_of(features)))
        (HERE / f"{name}.ids.txt").write_text(ids)


if __name__ == "__main__":
    main()
