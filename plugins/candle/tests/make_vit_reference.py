#!/usr/bin/env python3
"""A tiny, randomly initialised ViT and its reference outputs, for the candle plugin's parity test.

No ViT weights can be fetched where the plugin is developed, so parity is checked on a tiny model of
the real architecture, built and run by transformers (`ViTForImageClassification`), seeded, and
saved with `save_pretrained` exactly as hub checkpoints such as google/vit-base-patch16-224 are
laid out: config.json (model_type "vit"), model.safetensors (`vit.` + `classifier.` names) and
preprocessor_config.json (ViTImageProcessor: exact resize, rescale, normalise).

reference.json holds, for each of a few real COCO photos: its file name, the pixel tensor of the
PIL-based reference processor (so forward parity can be told apart from preprocessing parity), the
`features` (the [CLS] token after the final layer norm, `last_hidden_state[:, 0]` of ViTModel) and
the classifier `logits`.

Run from the repo root (needs torch, transformers 5, pillow):
  python plugins/candle/tests/make_vit_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from PIL import Image
from transformers import ViTConfig, ViTForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGES = REPO_ROOT.parent / "shared/data/coco-sample/images"
OUT = Path(__file__).resolve().parent / "fixtures/vit"
PHOTOS = ["000000000139.jpg", "000000000790.jpg", "000000005802.jpg", "000000011813.jpg"]
SEED = 4321


def main() -> None:
    torch.manual_seed(SEED)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        hidden_act="gelu", image_size=32, patch_size=8, num_channels=3, qkv_bias=True,
        num_labels=7, layer_norm_eps=1e-12,
    )
    model = ViTForImageClassification(config).eval()
    # Random init leaves the layer norms at identity and biases at zero; perturb them so a loader
    # that skips one of them fails the test.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    processor = ViTImageProcessorPil(
        do_resize=True, size={"height": 32, "width": 32}, resample=2,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3],
    )
    processor.save_pretrained(OUT)

    images = []
    for photo in PHOTOS:
        pixels = processor(images=Image.open(IMAGES / photo).convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            hidden = model.vit(pixel_values=pixels).last_hidden_state[:, 0]
            logits = model(pixel_values=pixels).logits
        images.append({
            "file": photo,
            "pixels_shape": list(pixels.shape[1:]),
            "pixels": [round(float(v), 7) for v in pixels.reshape(-1)],
            "features": [float(v) for v in hidden[0]],
            "logits": [float(v) for v in logits[0]],
        })
    reference = {
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "seed": SEED},
        "images": images,
    }
    (OUT / "reference.json").write_text(json.dumps(reference) + "\n")


if __name__ == "__main__":
    main()
