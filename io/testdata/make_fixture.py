"""Writes io/testdata/torch_written.safetensors: a few tensors made by PyTorch, serialized by hand in
the safetensors layout the Python library uses (torch 1.13 here has no safetensors package).

Run once with Debian's torch:  /usr/bin/python3 io/testdata/make_fixture.py
It prints the values the test expects (the test hard-codes them; it never needs Python).

Layout, as safetensors' `serialize` does it: tensors ordered by dtype size (largest first) then name,
so the data order differs from the name order; header JSON with "__metadata__" first, padded with
spaces to a multiple of 8 bytes; an 8-byte little-endian header length in front.
"""

import json
import os
import struct

import torch

DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.bool: "BOOL",
}


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Raw little-endian bytes of a tensor (numpy has no bfloat16: 16-bit floats go through int16)."""
    t = t.contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def main() -> None:
    third = torch.tensor([[1.0 / 3, -2.5, 1e-3], [65504.0, 3.14159265, -0.1]], dtype=torch.float32)
    tensors = {
        "embed.weight": third.clone(),  # F32 [2, 3]
        "half.weight": third.to(torch.float16),  # F16 [2, 3] (rounded by torch)
        "brain.bias": torch.tensor([1.0 / 3, -1e10, 7.0, 0.0078125], dtype=torch.float32).to(torch.bfloat16),
        "position_ids": torch.arange(5, dtype=torch.int64).view(1, 5) - 2,  # I64 [1, 5]
        "mask": torch.tensor([[True, False], [False, True], [True, True]]),  # BOOL [3, 2]
    }
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header = {"__metadata__": {"format": "pt", "made_by": "io/testdata/make_fixture.py"}}
    blobs = []
    offset = 0
    for name in order:
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_written.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    for name in sorted(tensors):
        t = tensors[name]
        vals = t.to(torch.float64).flatten().tolist() if t.is_floating_point() else t.flatten().tolist()
        print(name, DTYPE_NAMES[t.dtype], list(t.shape), [repr(v) for v in vals])
    print("wrote", path, os.path.getsize(path), "bytes; data order:", order)


if __name__ == "__main__":
    main()
