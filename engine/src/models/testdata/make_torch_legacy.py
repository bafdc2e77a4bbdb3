#!/usr/bin/env python3
"""Write tiny.pth, the legacy-format (pre-zip) PyTorch checkpoint the torch_legacy tests read.

A state dict of four tensors that exercise what the reader must handle: an f32 matrix, an int64
scalar (like BatchNorm's num_batches_tracked), a transposed (non-contiguous) view and an offset
slice sharing one storage, and an f64 vector; the dict carries `_metadata` like a module's
state_dict(). Values are small integers and halves, so the Rust test can state them exactly.

Run from the repo root with any PyTorch (made with torch 2.15.0):
  python engine/src/models/testdata/make_torch_legacy.py
"""

from collections import OrderedDict
from pathlib import Path

import torch

base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 2  # 0, 0.5, ..., 5.5
state = OrderedDict()
state["layer.weight"] = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.5, -6.0]])
state["layer.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
state["view.transposed"] = base.t()          # shape (4, 3), strides (1, 4)
state["view.slice"] = base[1:, 2:]           # shape (2, 2), offset 6, strides (4, 1)
state["double"] = torch.tensor([0.25, -1.0], dtype=torch.float64)
state._metadata = OrderedDict({"": {"version": 1}})
out = Path(__file__).with_name("tiny.pth")
torch.save(state, out, _use_new_zipfile_serialization=False)
print(f"wrote {out} ({out.stat().st_size} bytes)")
