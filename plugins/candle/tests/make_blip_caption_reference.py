#!/usr/bin/env python3
"""A tiny, randomly initialised BLIP captioning model and the captions transformers generates.

No real BLIP weights can be fetched where the plugin is developed, so captioning parity is checked
on a tiny model of the real architecture (transformers `BlipForConditionalGeneration`: BLIP's ViT
and the `BlipTextLMHeadModel` decoder with cross-attention), seeded, and saved in the layout of
the real `Salesforce/blip-image-captioning-*` folders:

  fixtures/blip_caption/  config.json, model.safetensors (`save_pretrained`), tokenizer.json and
                          tokenizer_config.json (the BERT WordPiece tokenizer of fixtures/blip,
                          with BLIP's `[DEC]` bos token), preprocessor_config.json

and `reference.json`: for every image its file name and the pixel tensor `BlipImageProcessorPil`
produced, and for every case (generation options, as the plugin takes them) the token ids
`model.generate` returned for that image alone (prompt included, up to and including the eos
token) and `processor.decode(ids, skip_special_tokens=True)`.

Random tiny models tend to emit one token over and over; the word embeddings (which are also the
LM head) are initialised with a large spread so that captions vary from image to image and the
test is discriminating. The script checks that they do.

Run from the repo root (needs torch, transformers 5, pillow, safetensors, tokenizers):
  /work/venv-ref/bin/python plugins/candle/tests/make_blip_caption_reference.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers
from PIL import Image
from transformers import BertTokenizerFast, BlipConfig, BlipForConditionalGeneration
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGES = REPO_ROOT.parent / "shared/data/coco-sample/images"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FOLDER = FIXTURES / "blip_caption"
SEED = 2024
N_IMAGES = 4
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PROMPT = "a picture of"
EOS_BIAS = 7.0

# Generation options, with the plugin's names; a missing key takes the default.
CASES = [
    {"max_length": 20},
    {"max_length": 20, "prompt": PROMPT},
    {"max_length": 20, "num_beams": 3},
    {"max_length": 18, "num_beams": 3, "prompt": PROMPT, "min_length": 12},
    # The default length (20 new tokens after the prompt, as transformers 5 does) and min_length.
    {"min_length": 8},
]


def images() -> list[tuple[str, Image.Image]]:
    names = sorted(p.name for p in IMAGES.glob("*.jpg"))[:N_IMAGES]
    return [(n, Image.open(IMAGES / n).convert("RGB")) for n in names]


def rounded(t: torch.Tensor, digits: int = 7) -> list:
    return [float(f"{x:.{digits}g}") for x in t.detach().double().flatten().tolist()]


def randomize(model: torch.nn.Module) -> None:
    """Random weights with a spread like trained ones (LayerNorms away from 1/0, no zero biases),
    and large word embeddings so that the tied LM head separates tokens clearly."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.02 if p.dim() > 1 else 0.1
            base = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0
            if "word_embeddings" in name:
                scale = 0.5
            elif "embedding" in name:
                scale = 0.08
            elif "crossattention" in name and p.dim() > 1:
                scale = 0.2  # so that the image, through cross-attention, steers the caption
            p.copy_(base + scale * torch.randn_like(p))


def generate(model, processor_tok, pixels: torch.Tensor, case: dict) -> list[int]:
    kwargs = {k: case[k] for k in ("max_length", "min_length", "num_beams") if k in case}
    if "prompt" in case:
        enc = processor_tok(case["prompt"], return_tensors="pt")
        kwargs["input_ids"] = enc["input_ids"]
        kwargs["attention_mask"] = enc["attention_mask"]
    with torch.no_grad():
        out = model.generate(pixel_values=pixels, **kwargs)
    assert out.shape[0] == 1
    return out[0].tolist()


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(FIXTURES / "blip" / name, FOLDER / name)
    tok = BertTokenizerFast.from_pretrained(FOLDER)
    torch.manual_seed(SEED)
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=40, encoder_hidden_size=24,
            pad_token_id=tok.pad_token_id, bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
            sep_token_id=tok.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8,
        ),
    )
    model = BlipForConditionalGeneration(config).eval()
    randomize(model)
    with torch.no_grad():
        # Make eos ([SEP]) likely enough that some captions end before max_length (and beam
        # search has finished hypotheses to rank), but not at once.
        model.text_decoder.cls.predictions.bias[tok.sep_token_id] += EOS_BIAS
    model.save_pretrained(FOLDER, safe_serialization=True)
    (FOLDER / "generation_config.json").unlink(missing_ok=True)  # real folders have none
    pre = {
        "do_normalize": True, "do_resize": True, "do_rescale": True,
        "image_mean": CLIP_MEAN, "image_processor_type": "BlipImageProcessor",
        "image_std": CLIP_STD, "processor_class": "BlipProcessor", "resample": 3,
        "rescale_factor": 1 / 255, "size": {"height": 32, "width": 32},
    }
    (FOLDER / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    processor = BlipImageProcessorPil.from_pretrained(FOLDER)
    tok = BertTokenizerFast.from_pretrained(FOLDER)

    named = images()
    pixels = processor([im for _, im in named], return_tensors="pt")["pixel_values"]
    cases = []
    ended = set()  # whether captions ended with eos (True) or at max_length (False)
    for case in CASES:
        outputs = []
        for i in range(len(named)):
            ids = generate(model, tok, pixels[i : i + 1], case)
            outputs.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True)})
        texts = [o["text"] for o in outputs]
        print(f"{case}: {texts}")
        assert len(set(texts)) > 1, f"{case}: every image got the same caption"
        assert any(len(o["ids"]) > 4 for o in outputs), f"{case}: every caption ended at once"
        ended.update(o["ids"][-1] == tok.sep_token_id for o in outputs)
        cases.append({"options": case, "outputs": outputs})
    assert ended == {True, False}, f"captions end only by {'eos' if True in ended else 'length'}"
    ref = {
        "generator": "plugins/candle/tests/make_blip_caption_reference.py",
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__},
        "pixel_shape": list(pixels.shape[1:]),
        "images": [{"file": n, "pixels": rounded(p)} for (n, _), p in zip(named, pixels)],
        "cases": cases,
    }
    (FOLDER / "reference.json").write_text(json.dumps(ref) + "\n")
    print(f"blip_caption: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
