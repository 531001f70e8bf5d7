"""Classify images with a model from `python -m finetune.export`: numpy, Pillow and onnxruntime only.

Usage: python onnx_predict.py EXPORT_FOLDER IMAGE [IMAGE ...]
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image


def prepare(path, card):
    """One image file -> (3, S, S) float32, as dermkit prepares it (the card's "preprocessing")."""
    size = card["image_size"]
    with Image.open(path) as image:  # 8-bit RGB, transparency composited on white
        rgba = image.convert("RGBA")
    image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    scale = size / min(image.size)  # short side to S, then the centre S x S
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (width - size) // 2, (height - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    if card["color_constancy"] == "shades_of_gray":  # Shades of Gray, p = 6
        values = pixels.astype(np.float64)
        illuminant = np.power(np.mean(np.power(values, 6), axis=(0, 1)), 1 / 6)
        norm = np.linalg.norm(illuminant)
        if norm > 0:
            gains = np.where(illuminant > 0, norm / (np.sqrt(3.0) * np.maximum(illuminant, 1e-12)), 1.0)
            pixels = np.clip(values * gains + 0.5, 0, 255).astype(np.uint8)
    mean, std = np.array(card["mean"], np.float32), np.array(card["std"], np.float32)
    return ((pixels.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)


def predict(folder, paths):
    """Class names and probabilities (N, C) of the images."""
    card = json.loads((Path(folder) / "model.json").read_text())
    session = onnxruntime.InferenceSession(str(Path(folder) / card["model_file"]),
                                           providers=["CPUExecutionProvider"])
    batch = np.stack([prepare(path, card) for path in paths])  # (N, 3, S, S)
    return card["classes"], session.run(["probabilities"], {"images": batch})[0]


if __name__ == "__main__":
    classes, probabilities = predict(sys.argv[1], sys.argv[2:])
    for path, p in zip(sys.argv[2:], probabilities):
        print(f"{path}: {classes[p.argmax()]} ({p.max():.3f})")
