#!/usr/bin/env python3
"""Generate PIL reference values for the image preprocessing of the candle plugin.

Writes plugins/candle/tests/fixtures/preprocess/: two small RGB patches cut from real COCO photos
(lossless PNG, so the Rust test decodes exactly the pixels PIL resized) and preprocess.json with:
  * "resize": PIL `Image.resize((w, h), resample)` of each patch, for down-, up- and mixed
    scaling with NEAREST, BILINEAR and BICUBIC, as row-major RGB8 bytes in hex;
  * "photos": for whole COCO sample photos, the sha256 of PIL's decoded RGB bytes and PIL's
    bicubic shortest-edge resize to 64 then a transformers-style 56x56 center crop, as hex RGB8
    (the Rust test decodes the JPEG itself, so it also measures decoder differences);
  * "pipeline": the output of transformers' PIL-backed CLIP image processor (shortest-edge resize,
    center crop, rescale, normalize) on each patch, as a flat (3, H, W) float list.

Needs: Python with Pillow and transformers (the committed files were made with Pillow 13.0.0 and
transformers 5.24.0, see the "environment" field). Run from the repo root:
  python plugins/candle/tests/make_preprocess_reference.py \
      [--images ../shared/data/coco-sample/images]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[3]
OUT = REPO_ROOT / "plugins/candle/tests/fixtures/preprocess"

# (photo, left, top, width, height): a textured 61x47 and a 40x52 region.
PATCHES = [("000000000139.jpg", 200, 150, 61, 47), ("000000000802.jpg", 120, 200, 40, 52)]
# (width, height) targets: down in both, up (mostly), mixed.
SIZES = [(23, 17), (71, 50), (30, 60)]
FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC}
PHOTOS = ["000000000139.jpg", "000000000790.jpg", "000000005802.jpg", "000000011813.jpg"]
PHOTO_EDGE, PHOTO_CROP = 64, 56
# A CLIP-style processor configuration scaled down to the patches.
PIPELINE = {
    "image_processor_type": "CLIPImageProcessor",
    "do_resize": True, "size": {"shortest_edge": 33}, "resample": 3,
    "do_center_crop": True, "crop_size": {"height": 28, "width": 26},
    "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, default=REPO_ROOT.parent / "shared/data/coco-sample/images")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    import transformers

    processor = CLIPImageProcessorPil(**{k: v for k, v in PIPELINE.items() if k != "image_processor_type"})
    (OUT / "preprocessor_config.json").write_text(json.dumps(PIPELINE, indent=1) + "\n")

    resize, pipeline = [], []
    for i, (photo, left, top, w, h) in enumerate(PATCHES):
        patch = Image.open(args.images / photo).convert("RGB").crop((left, top, left + w, top + h))
        name = f"patch{i}.png"
        patch.save(OUT / name)
        for (tw, th) in SIZES:
            for fname, f in FILTERS.items():
                out = patch.resize((tw, th), f)
                resize.append({"patch": name, "width": tw, "height": th, "filter": fname,
                               "rgb": np.asarray(out, dtype=np.uint8).tobytes().hex()})
        pixels = processor(images=patch, return_tensors="np")["pixel_values"][0]
        pipeline.append({"patch": name, "shape": list(pixels.shape),
                         "values": [round(float(v), 6) for v in pixels.reshape(-1)]})

    photos = []
    for photo in PHOTOS:
        image = Image.open(args.images / photo).convert("RGB")
        w, h = image.size
        short, long = min(w, h), max(w, h)
        new_long = int(PHOTO_EDGE * long / short)
        size = (PHOTO_EDGE, new_long) if w <= h else (new_long, PHOTO_EDGE)
        resized = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)
        top, left = (resized.shape[0] - PHOTO_CROP) // 2, (resized.shape[1] - PHOTO_CROP) // 2
        crop = resized[top:top + PHOTO_CROP, left:left + PHOTO_CROP]
        decoded = np.asarray(image, dtype=np.uint8).tobytes()
        photos.append({"photo": photo, "decoded_sha256": hashlib.sha256(decoded).hexdigest(),
                       "edge": PHOTO_EDGE, "crop": PHOTO_CROP, "rgb": crop.tobytes().hex()})

    fixture = {
        "environment": {"pillow": PIL.__version__, "transformers": transformers.__version__},
        "resize": resize,
        "photos": photos,
        "pipeline": pipeline,
    }
    (OUT / "preprocess.json").write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
