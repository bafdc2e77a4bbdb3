#!/usr/bin/env python3
"""Tiny, randomly initialised CLIP / OpenCLIP / BLIP models and their reference features.

No real CLIP or BLIP weights can be fetched where the plugin is developed, so parity is checked on
tiny models of the real architectures, built and run by the reference implementations (transformers
`CLIPModel` and `BlipForImageTextRetrieval`, open_clip's `CLIP`), seeded, and saved in the layouts
the real checkpoints use:

  fixtures/clip/      transformers `save_pretrained` folder: config.json, model.safetensors,
                      tokenizer.json (+ tokenizer_config.json), preprocessor_config.json
  fixtures/openclip/  open_clip_config.json (model_cfg + preprocess_cfg),
                      open_clip_pytorch_model.bin (a `torch.save`d state dict), tokenizer.json
  fixtures/blip/      transformers `save_pretrained` folder of BlipForImageTextRetrieval:
                      config.json, model.safetensors, tokenizer.json, preprocessor_config.json

plus `reference.json` in each: for every image its file name, the pixel tensor the reference
preprocessing produced (so forward parity can be told apart from preprocessing parity) and the
L2-normalised image features; for every caption the token ids and the L2-normalised text features.
BLIP's also has `vision_cls_features`: the normalised post-layernorm class token, which is what a
BLIP checkpoint without `vision_proj` (captioning, VQA) is embedded with.

The CLIP tokenizer is a genuine CLIP byte-level BPE (`</w>` word-end suffix, lower-casing, CLIP's
pre-tokenizer regex), with only the first MERGES merges of open_clip's bundled
`bpe_simple_vocab_16e6.txt.gz`, so the vocabulary stays small; the script checks that open_clip's
own `SimpleTokenizer` on the same merges gives the same ids as the saved `tokenizer.json`.

Image preprocessing references are the PIL-based processors (`CLIPImageProcessorPil`,
`BlipImageProcessorPil`) and open_clip's torchvision-on-PIL transform.

Run from the repo root (needs torch, transformers 5, open_clip_torch, pillow):
  python plugins/candle/tests/make_clip_blip_reference.py
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import open_clip
import torch
import transformers
from PIL import Image
from transformers import (
    BertTokenizerFast,
    BlipConfig,
    BlipForImageTextRetrieval,
    CLIPConfig,
    CLIPModel,
    CLIPTokenizer,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGES = REPO_ROOT.parent / "shared/data/coco-sample/images"
CAPTIONS = REPO_ROOT.parent / "shared/data/coco-sample/annotations/captions.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MERGES = 400
SEED = 1234
N_IMAGES = 4
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable character table (as in open_clip/tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def small_bpe(tmp: Path) -> tuple[dict[str, int], list[str], Path]:
    """The first MERGES merges of open_clip's vocabulary, as CLIP builds its vocab from them."""
    lines = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    gz = tmp / "bpe_small.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        # No trailing newline: open_clip would read it as one more (empty) merge.
        f.write("\n".join([lines[0]] + merges))
    return {t: i for i, t in enumerate(vocab)}, merges, gz


def captions() -> list[str]:
    """Five COCO captions (lowest annotation ids), a long one that must be truncated, and one
    with accents, digits and punctuation that exercise the pre-tokenizer."""
    anns = sorted(json.loads(CAPTIONS.read_text())["annotations"], key=lambda a: a["id"])
    texts = [" ".join(a["caption"].split()) for a in anns[:5]]
    texts.append(" ".join(" ".join(a["caption"].split()) for a in anns[5:10]))
    texts.append("Café: 2 dogs & a CAT aren't on the 3rd sofa!!")
    return texts


def images() -> list[tuple[str, Image.Image]]:
    names = sorted(p.name for p in IMAGES.glob("*.jpg"))[:N_IMAGES]
    return [(n, Image.open(IMAGES / n).convert("RGB")) for n in names]


def rounded(t: torch.Tensor, digits: int = 8) -> list:
    return [float(f"{x:.{digits}g}") for x in t.detach().double().flatten().tolist()]


def write_reference(folder: Path, pixels, image_feats, ids, text_feats, extra: dict) -> None:
    names = [n for n, _ in images()]
    ref = {
        "generator": "plugins/candle/tests/make_clip_blip_reference.py",
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "open_clip": open_clip.__version__,
        },
        "pixel_shape": list(pixels.shape[1:]),
        "images": [
            {"file": n, "pixels": rounded(p, 7), "features": rounded(f)}
            for n, p, f in zip(names, pixels, image_feats)
        ],
        "texts": [
            {"text": t, "ids": i, "features": rounded(f)}
            for t, i, f in zip(captions(), ids, text_feats)
        ],
        **extra,
    }
    (folder / "reference.json").write_text(json.dumps(ref) + "\n")


def normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def make_clip(vocab: dict[str, int], merges: list[str]) -> CLIPTokenizer:
    """Saves fixtures/clip; returns its tokenizer, which the OpenCLIP folder ships too."""
    folder = FIXTURES / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=24, hidden_act="quick_gelu",
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, hidden_act="gelu",
        ),
        projection_dim=24,
    )
    model = CLIPModel(config).eval()
    randomize(model)
    model.save_pretrained(folder, safe_serialization=True)

    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split()) for m in merges])
    tok.model_max_length = config.text_config.max_position_embeddings
    tok.save_pretrained(folder)
    for extra in ["vocab.json", "merges.txt", "special_tokens_map.json", "chat_template.jinja"]:
        (folder / extra).unlink(missing_ok=True)

    # The layout of the real openai/clip-vit-* preprocessor_config.json (integer size/crop_size).
    pre = {
        "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD, "resample": 3, "size": 32,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    processor = CLIPImageProcessorPil.from_pretrained(folder)

    pixels = processor([im for _, im in images()], return_tensors="pt")["pixel_values"]
    enc = tok(captions(), padding=True, truncation=True,
              max_length=config.text_config.max_position_embeddings, return_tensors="pt")
    with torch.no_grad():
        image_feats = normalize(model.get_image_features(pixel_values=pixels).pooler_output)
        text_feats = normalize(
            model.get_text_features(input_ids=enc["input_ids"],
                                    attention_mask=enc["attention_mask"]).pooler_output)
    ids = [row[m.bool()].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"])]
    write_reference(folder, pixels, image_feats, ids, text_feats, {})
    print(f"clip: {sum(p.numel() for p in model.parameters())} parameters")
    return tok


def make_openclip(bpe_gz: Path, hf_tokenizer: CLIPTokenizer) -> None:
    folder = FIXTURES / "openclip"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED + 1)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(bpe_path=str(bpe_gz), context_length=20)
    model_cfg = {
        "embed_dim": 24,
        "quick_gelu": False,
        "vision_cfg": {"image_size": 36, "layers": 2, "width": 32, "head_width": 8,
                       "patch_size": 12, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 20, "vocab_size": tokenizer.vocab_size, "width": 32,
                     "heads": 4, "layers": 2},
    }
    preprocess_cfg = {"mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic",
                      "resize_mode": "shortest"}
    model = open_clip.model.CLIP(**model_cfg).eval()
    randomize(model)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n")
    hf_tokenizer.model_max_length = 20
    hf_tokenizer.save_pretrained(folder)
    for extra in ["vocab.json", "merges.txt", "special_tokens_map.json", "chat_template.jinja"]:
        (folder / extra).unlink(missing_ok=True)

    transform = open_clip.transform.image_transform(
        36, is_train=False, mean=CLIP_MEAN, std=CLIP_STD, resize_mode="shortest",
        interpolation="bicubic")
    pixels = torch.stack([transform(im) for _, im in images()])
    tokens = tokenizer(captions())
    with torch.no_grad():
        image_feats = normalize(model.encode_image(pixels))
        text_feats = normalize(model.encode_text(tokens))
    ids = [row[: int(row.argmax()) + 1].tolist() for row in tokens]
    hf_ids = [hf_tokenizer(t, truncation=True, max_length=20)["input_ids"] for t in captions()]
    assert ids == hf_ids, f"open_clip and tokenizer.json disagree:\n{ids}\n{hf_ids}"
    write_reference(folder, pixels, image_feats, ids, text_feats, {})
    print(f"openclip: {sum(p.numel() for p in model.parameters())} parameters; "
          "open_clip SimpleTokenizer == tokenizer.json on all captions")


def blip_tokenizer() -> BertTokenizerFast:
    """A BERT WordPiece tokenizer like BLIP's (bert-base-uncased + [DEC] bos), on a vocabulary of
    the caption words and their characters."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from tokenizers.normalizers import BertNormalizer
    norm, pre = BertNormalizer(lowercase=True), BertPreTokenizer()
    pieces = set()
    for t in captions():
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)):
            if len(w) > 6 and len(w) % 2 == 0:
                pieces.update([w[:3], "##" + w[3:]])  # some words only as word pieces
            else:
                pieces.add(w)
            pieces.update(w)
            pieces.update("##" + c for c in w)
    vocab = specials + sorted(pieces)
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                            bos_token="[DEC]")
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def make_blip() -> None:
    folder = FIXTURES / "blip"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED + 2)
    tok = blip_tokenizer()
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=40, encoder_hidden_size=32,
            pad_token_id=tok.pad_token_id, bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
            sep_token_id=tok.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8,
        ),
        projection_dim=24,
        image_text_hidden_size=16,
    )
    model = BlipForImageTextRetrieval(config).eval()
    randomize(model)
    model.save_pretrained(folder, safe_serialization=True)
    tok.model_max_length = 35
    tok.save_pretrained(folder)
    for extra in ["vocab.txt", "special_tokens_map.json", "chat_template.jinja"]:
        (folder / extra).unlink(missing_ok=True)
    pre = {
        "do_normalize": True, "do_resize": True, "do_rescale": True,
        "image_mean": CLIP_MEAN, "image_processor_type": "BlipImageProcessor",
        "image_std": CLIP_STD, "processor_class": "BlipProcessor", "resample": 3,
        "rescale_factor": 1 / 255, "size": {"height": 32, "width": 32},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    processor = BlipImageProcessorPil.from_pretrained(folder)

    pixels = processor([im for _, im in images()], return_tensors="pt")["pixel_values"]
    enc = tok(captions(), padding=True, truncation=True, max_length=35, return_tensors="pt")
    with torch.no_grad():
        cls = model.vision_model(pixel_values=pixels).last_hidden_state[:, 0, :]
        image_feats = normalize(model.vision_proj(cls))
        # What a checkpoint without `vision_proj` (captioning, VQA) yields: the class token.
        cls_feats = normalize(cls)
        text = model.text_encoder(input_ids=enc["input_ids"],
                                  attention_mask=enc["attention_mask"]).last_hidden_state
        text_feats = normalize(model.text_proj(text[:, 0, :]))
    ids = [row[m.bool()].tolist() for row, m in zip(enc["input_ids"], enc["attention_mask"])]
    extra = {"vision_cls_features": [rounded(f) for f in cls_feats]}
    write_reference(folder, pixels, image_feats, ids, text_feats, extra)
    print(f"blip: {sum(p.numel() for p in model.parameters())} parameters")


def randomize(model: torch.nn.Module) -> None:
    """Random weights with a spread like trained ones: default inits leave LayerNorms at 1/0 and
    some parameters at zero, which would hide mistakes in how they are loaded."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "logit_scale" in name:
                continue
            scale = 0.02 if p.dim() > 1 else 0.1
            base = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0
            p.copy_(base + scale * torch.randn_like(p) * (4 if "embedding" in name else 1))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vocab, merges, gz = small_bpe(tmp)
        hf_tok = make_clip(vocab, merges)
        make_openclip(gz, hf_tok)
        make_blip()


if __name__ == "__main__":
    main()
