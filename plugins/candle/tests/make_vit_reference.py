#!/usr/bin/env python3
"""Make a tiny randomly initialised ViT with transformers and its reference outputs.

Writes plugins/candle/tests/fixtures/vit-tiny/: the model as `ViTModel.save_pretrained` writes it
(config.json, model.safetensors), the PIL-backed ViT image processor's preprocessor_config.json,
and reference.json: for the two preprocessing patches (tests/fixtures/preprocess/patch*.png), the
CLS token of `last_hidden_state` (after the final layer norm), i.e. what ViTForImageClassification
feeds its classifier. The Rust test checks the candle plugin's ViT family against it.

Needs: Python with torch and transformers (made with torch 2.15.0, transformers 5.24.0). Run from
the repo root:
  python plugins/candle/tests/make_vit_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from PIL import Image
from transformers import ViTConfig, ViTModel
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT / "plugins/candle/tests/fixtures"
OUT = FIXTURES / "vit-tiny"
PATCHES = ["patch0.png", "patch1.png"]


def main() -> None:
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, image_size=32, patch_size=8, qkv_bias=True,
                       hidden_act="gelu")
    model = ViTModel(config).eval()
    # Random init leaves small weights; scale them up so that every layer matters.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(OUT, safe_serialization=True)
    processor = ViTImageProcessorPil(size={"height": 32, "width": 32}, resample=2,
                                     image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor.save_pretrained(OUT)
    images = []
    for name in PATCHES:
        image = Image.open(FIXTURES / "preprocess" / name).convert("RGB")
        pixels = processor(images=image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            cls = model(pixel_values=pixels).last_hidden_state[0, 0]
        images.append({"patch": name, "cls": [float(f"{v:.7g}") for v in cls.tolist()]})
    fixture = {"environment": {"torch": torch.__version__, "transformers": transformers.__version__},
               "images": images}
    (OUT / "reference.json").write_text(json.dumps(fixture) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
