"""Image fixtures for data/image_test.ts and data/preprocess_test.ts.

Run by hand with Debian's Python and Pillow (python3-pil) and numpy:

    /usr/bin/python3 data/testdata/make_images.py [--out data/testdata]

Writes into --out:

- small images of known pixels in each format and colour mode the decoder must handle (PNG RGB,
  grayscale, RGBA, palette, 16-bit; lossless and lossy WebP; JPEG RGB, grayscale, CMYK, with an EXIF
  orientation tag), and a noisy "photo" JPEG and lossy WebP whose Pillow decodes are stored;
- golden.safetensors: for each preprocessing case, the input image (U8 [H, W, 3]), the image after
  Pillow's pad / resize / crop as the Hugging Face image processors and LLaVA do it (U8 [S, S, 3]),
  and for two cases the final normalized pixels (F32 [3, S, S]: float32 x * (1/255), then (x - mean) / std in
  float32, as transformers' rescale and normalize); the case configs are in the metadata as JSON;
  plus the Pillow decodes of the photo files (U8 [H, W, 3]).

Everything is seeded, so a rerun writes the same files.
"""

import argparse
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

SIGLIP = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
CLIP = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
}

# Pixel (x, y) of the 4x3 images is COLORS[y * 4 + x].
COLORS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),
    (0, 0, 0), (255, 255, 0), (0, 255, 255), (255, 0, 255),
    (12, 34, 56), (200, 100, 50), (1, 2, 3), (128, 127, 126),
]


def write_safetensors(path, tensors, metadata):
    """{name: numpy array (uint8 or float32)} -> safetensors (u64 LE header length, JSON header
    padded with spaces to a multiple of 8, raw little-endian data in sorted name order)."""
    dtypes = {np.dtype("uint8"): "U8", np.dtype("float32"): "F32"}
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": dtypes[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def png_rgb16(path, rgb16):
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): IHDR, one IDAT, IEND."""
    h, w, _ = rgb16.shape

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def blocks(colors, mode="RGB"):
    """8x8 blocks of solid colour side by side (JPEG-friendly: one block per 8x8 unit)."""
    img = Image.new(mode, (8 * len(colors), 8))
    for i, c in enumerate(colors):
        img.paste(c, (8 * i, 0, 8 * i + 8, 8))
    return img


def expand2square(img, fill):
    """LLaVA's expand2square: paste on a square canvas of the fill colour, centered."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), fill)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def hf_preprocess(img, case):
    """The pad / resize / crop stage as transformers (PIL resample) and LLaVA run it."""
    s = case["size"]
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[case["resample"]]
    mode = case["mode"]
    if mode == "pad":
        img = expand2square(img, tuple(case["fill"]))
    if mode in ("resize", "pad"):
        return img.resize((s, s), resample) if img.size != (s, s) else img
    # crop: shortest edge to s (transformers' get_resize_output_image_size), then center crop.
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(s * long / short)
    size = (s, new_long) if w <= h else (new_long, s)
    if img.size != size:
        img = img.resize(size, resample)
    w, h = img.size
    top, left = (h - s) // 2, (w - s) // 2
    return img.crop((left, top, left + s, top + s))


def normalize(u8, mean, std):
    """transformers: rescale (float64 * 1/255 -> float32), normalize ((x - mean) / std in float32)."""
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.array(mean, dtype=np.float32)
    d = np.array(std, dtype=np.float32)
    return ((x - m) / d).astype(np.float32).transpose(2, 0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)
    rng = np.random.default_rng(20240611)

    rgb = Image.new("RGB", (4, 3))
    rgb.putdata(COLORS)
    rgb.save(p("rgb_4x3.png"))
    rgb.save(p("rgb_4x3.webp"), lossless=True, quality=100, exact=True)
    gray = Image.new("L", (4, 3))
    gray.putdata([0, 17, 34, 51, 68, 85, 102, 119, 136, 200, 254, 255])
    gray.save(p("gray_4x3.png"))
    rgba = Image.new("RGBA", (4, 3))
    rgba.putdata([c + (a,) for c, a in zip(COLORS, [255, 0, 128, 1] * 3)])
    rgba.save(p("rgba_4x3.png"))
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    assert list(pal.convert("RGB").getdata()) == COLORS
    pal.save(p("palette_4x3.png"))
    png_rgb16(p("rgb16_4x3.png"), np.array(COLORS, dtype=np.uint16).reshape(3, 4, 3) * 257)

    jpeg_colors = [(200, 30, 40), (20, 60, 220), (240, 240, 16)]
    blocks(jpeg_colors).save(p("rgb_24x8.jpg"), quality=100, subsampling=0)
    blocks(jpeg_colors).save(p("rgb_24x8.webp"), quality=100)
    blocks([90, 180], "L").save(p("gray_16x8.jpg"), quality=100)
    # CMYK: white, black, cyan.
    blocks([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0)], "CMYK").save(p("cmyk_24x8.jpg"), quality=100)
    rot = blocks([(200, 30, 40), (20, 60, 220)])
    exif = rot.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display; the decoder keeps the stored layout
    rot.save(p("exif6_16x8.jpg"), quality=100, subsampling=0, exif=exif.tobytes())

    # A noisy "photo": smooth gradients plus noise, lossy (4:2:0 JPEG, lossy WebP).
    yy, xx = np.mgrid[0:24, 0:32]
    photo = np.stack([xx * 7, yy * 9, (xx + yy) * 3], axis=-1) + rng.integers(0, 40, (24, 32, 3))
    photo = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB")
    photo.save(p("photo_32x24.jpg"), quality=75)
    photo.save(p("photo_32x24.webp"), quality=75)

    tensors = {}
    for name in ("photo_32x24.jpg", "photo_32x24.webp"):
        with Image.open(p(name)) as im:
            tensors[f"decode.{name}"] = np.asarray(im.convert("RGB"))

    def case(w, h, **cfg):
        base = {"size": 8, "mode": "resize", "fill": [127, 127, 127], "resample": "bicubic", **SIGLIP}
        return (w, h, {**base, **cfg})

    cases = {
        "down": case(19, 13),
        "up": case(5, 3),
        "same": case(8, 8),
        "bilinear_down": case(19, 13, resample="bilinear"),
        "bilinear_up": case(5, 3, resample="bilinear"),
        "pad_wide": case(19, 13, mode="pad"),
        "pad_tall": case(6, 13, mode="pad", fill=[255, 0, 64]),
        "crop_wide": case(19, 13, mode="crop", **CLIP),
        "crop_tall": case(9, 23, mode="crop", size=6, **CLIP),
        "crop_up": case(7, 5, mode="crop", **CLIP),
    }
    meta = {}
    NORMALIZED = ("pad_wide", "crop_wide")
    for name, (w, h, cfg) in cases.items():
        x = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        resized = np.asarray(hf_preprocess(Image.fromarray(x, "RGB"), cfg))
        tensors[f"{name}.input"] = x
        tensors[f"{name}.resized"] = resized
        if name in NORMALIZED:
            tensors[f"{name}.pixels"] = normalize(resized, cfg["mean"], cfg["std"])
        meta[name] = json.dumps(cfg)
    write_safetensors(p("golden.safetensors"), tensors, meta)


if __name__ == "__main__":
    main()
