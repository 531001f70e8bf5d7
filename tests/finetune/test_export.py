"""``python -m finetune.export``: an ONNX model and its card, checked against PyTorch and against dermkit's own
preprocessing through the README's example (``docs/examples/onnx_predict.py``), which uses no dermkit."""

from __future__ import annotations

import ast
import csv
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from dermkit.config import DataConfig
from dermkit.data.cache import cache_images
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData, prepare_data
from finetune.evaluate import load_classifier
from finetune.explain import normalise
from finetune.export import CARD_FILE, CARD_METADATA_KEY, INSTALL_HINT, MODEL_FILE, TOLERANCE, main
from finetune.module import ClassifierModule
from finetune.transforms import eval_transform
from tests.finetune.helpers import IMAGE_SIZE

onnx = pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "docs" / "examples" / "onnx_predict.py"
MEAN, STD = [0.6, 0.5, 0.45], [0.2, 0.25, 0.3]
COLOR = "shades_of_gray"  # the harder path: the example must do dermkit's colour constancy too


def write_checkpoint(run: Path, classes: list[str], color_constancy: str) -> Path:
    """A ``finetune.train``-style run folder holding an untrained tiny_cnn (32 px) with a sharpened head.

    The head's weights are scaled up so that the probabilities are far from uniform: a difference in
    preprocessing then shows in them (an untrained model's near-uniform probabilities would hide it).
    """
    torch.manual_seed(0)
    model = ClassifierModule(classes=classes, architecture="tiny_cnn", small_stem=True, image_size=IMAGE_SIZE,
                             mean=MEAN, std=STD, color_constancy=color_constancy).eval()
    with torch.no_grad():
        model.head.weight.mul_(60.0)
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = run / "checkpoints" / "best.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, checkpoint)
    (run / "run.json").write_text(json.dumps({"split_hash": "0123abcd", "fraction": 0.5}))
    return checkpoint


@pytest.fixture(scope="module")
def colour_data(demo_cache: Path) -> PreparedData:
    """The demo data at 32 px with Shades of Gray colour constancy (dermkit's preprocessing)."""
    return prepare_data(DataConfig(name="demo", image_size=IMAGE_SIZE, cache_dir=str(demo_cache),
                                   color_constancy=COLOR))


@pytest.fixture(scope="module")
def exported(colour_data: PreparedData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export folder of the sharpened checkpoint (colour constancy on)."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = write_checkpoint(root / "run", list(colour_data.classes), COLOR)
    assert main(["--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(root / "onnx")]) == 0
    return root / "onnx"


def normalised_images(module: ClassifierModule, prepared: PreparedData, rows: np.ndarray) -> torch.Tensor:
    """(N, 3, S, S) dermkit's cached images of ``rows``, normalised as finetune.evaluate feeds them to the model."""
    dataset = CachedImageDataset(prepared.cache_path, rows, prepared.labels,
                                 eval_transform(module.hparams.mean, module.hparams.std))
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def torch_probabilities(module: ClassifierModule, prepared: PreparedData, rows: np.ndarray) -> np.ndarray:
    """(N, C) probabilities of the PyTorch model on dermkit's cached, normalised images (what evaluate scores)."""
    with torch.no_grad():
        return module(normalised_images(module, prepared, rows)).softmax(dim=1).numpy()


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("onnx_predict", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_the_card_says_how_to_prepare_the_images(exported: Path, colour_data: PreparedData) -> None:
    card = json.loads((exported / CARD_FILE).read_text())
    checkpoint = Path(card["checkpoint"]["path"])
    assert card["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert card["classes"] == list(colour_data.classes) and card["class_names"]["mel"] == "melanoma"
    assert (card["image_size"], card["color_constancy"], card["architecture"]) == (IMAGE_SIZE, COLOR, "tiny_cnn")
    np.testing.assert_allclose(card["mean"], MEAN)
    np.testing.assert_allclose(card["std"], STD)
    assert card["input"] == {"name": "images", "dtype": "float32", "shape": ["batch", 3, IMAGE_SIZE, IMAGE_SIZE],
                             "layout": "NCHW, RGB, prepared as 'preprocessing' says"}
    assert card["output"]["name"] == "probabilities" and card["output"]["shape"] == ["batch", 7]
    words = " ".join(card["preprocessing"])
    for step in ("short side is 32 px", "BILINEAR and reducing_gap=2.0", "crop the centre 32 x 32",
                 "Shades of Gray (p=6)", "divide by 255", "subtract mean [0.6, 0.5, 0.45]"):
        assert step in words, step
    assert card["training_run"]["split_hash"] == "0123abcd" and card["training_run"]["label_fraction"] == 0.5
    assert card["exporter"]["dynamo"] is False and card["exporter"]["opset"] == 17
    assert 0 <= card["check"]["max_abs_probability_difference"] < TOLERANCE
    model = onnx.load(str(exported / MODEL_FILE))
    assert json.loads({p.key: p.value for p in model.metadata_props}[CARD_METADATA_KEY]) == card
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert (graph_input.name, graph_output.name) == ("images", "probabilities")
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"  # any batch size
    # nothing else, and nothing left from staging (the hidden .lock is the folder rule's, dermkit.out_folder)
    written = {p.name for p in exported.iterdir() if p.name != ".lock"}
    assert written == {MODEL_FILE, CARD_FILE, "config.yaml", "run.json"}


def test_onnxruntime_gives_pytorchs_probabilities_on_the_same_images(exported: Path,
                                                                      colour_data: PreparedData) -> None:
    card = json.loads((exported / CARD_FILE).read_text())
    module = load_classifier(card["checkpoint"]["path"])
    rows = colour_data.indices("test")
    expected = torch_probabilities(module, colour_data, rows)  # (N, C)
    batch = normalised_images(module, colour_data, rows).numpy()  # (N, 3, S, S)
    session = onnxruntime.InferenceSession(str(exported / MODEL_FILE), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"images": batch})[0]
    assert got.shape == expected.shape == (len(rows), 7)
    assert np.abs(got - expected).max() < TOLERANCE
    # A comparison that can fail: the probabilities depend on the image (a class's spans over 0.5 of [0, 1]).
    assert np.ptp(expected, axis=0).max() > 0.5 and len(set(expected.argmax(axis=1).tolist())) >= 2


def test_the_readme_example_matches_dermkit_without_importing_it(exported: Path, colour_data: PreparedData,
                                                                  tmp_path: Path) -> None:
    source = EXAMPLE.read_text()
    assert f"```python\n{source}```" in (REPO_ROOT / "README.md").read_text()  # the README shows this very file
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert imported == {"json", "sys", "pathlib", "numpy", "onnxruntime", "PIL"}
    rows = colour_data.indices("test")
    paths = [colour_data.source.records[i].path for i in rows.tolist()]  # the demo's 64 px PNG files
    classes, got = load_example().predict(exported, paths)
    module = load_classifier(json.loads((exported / CARD_FILE).read_text())["checkpoint"]["path"])
    expected = torch_probabilities(module, colour_data, rows)
    assert classes == list(colour_data.classes)
    assert np.abs(got - expected).max() < TOLERANCE
    # As a script, from a folder where dermkit cannot be imported.
    result = subprocess.run([sys.executable, str(EXAMPLE), str(exported), *map(str, paths[:2])], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    first = classes[int(expected[0].argmax())]
    assert result.stdout.splitlines()[0] == f"{paths[0]}: {first} ({expected[0].max():.3f})"


def odd_image_files(folder: Path, prepared: PreparedData) -> list[Path]:
    """Demo lesions saved in other shapes and modes than the demo's square RGB PNGs: the crop, the rounding
    of the resized side and the conversion to RGB all come into play."""
    from PIL import Image

    folder.mkdir()
    files = []
    shapes = [((200, 150), "RGB", "jpg"), ((150, 200), "RGB", "png"), ((97, 61), "RGB", "png"),
              ((45, 130), "RGBA", "png"), ((120, 90), "P", "png"), ((64, 50), "L", "bmp")]
    for i, (size, mode, suffix) in enumerate(shapes):
        with Image.open(prepared.source.records[i].path) as lesion:
            image = lesion.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        if mode == "RGBA":  # a transparent band: dermkit composites it on white
            alpha = np.full(size[::-1], 255, dtype=np.uint8)
            alpha[:, : size[0] // 3] = 60
            image.putalpha(Image.fromarray(alpha))
        elif mode != "RGB":
            image = image.convert(mode)
        files.append(folder / f"odd_{i}.{suffix}")
        image.save(files[-1])
    return files


def test_the_example_prepares_any_image_file_as_dermkit_does(exported: Path, colour_data: PreparedData,
                                                             tmp_path: Path) -> None:
    files = odd_image_files(tmp_path / "images", colour_data)
    # (N, S, S, 3): decoded, resized, cropped and colour-corrected as every dermkit stage caches images
    cached = np.array(cache_images(files, IMAGE_SIZE, tmp_path / "cache", color_constancy=COLOR).open())
    module = load_classifier(json.loads((exported / CARD_FILE).read_text())["checkpoint"]["path"])
    with torch.no_grad():
        expected = module(normalise(cached, MEAN, STD)).softmax(dim=1).numpy()  # (N, C)
    example = load_example()
    card = json.loads((exported / CARD_FILE).read_text())
    prepared = np.stack([example.prepare(path, card) for path in files])  # (N, 3, S, S)
    np.testing.assert_allclose(prepared, normalise(cached, MEAN, STD).numpy(), atol=1e-6)  # the same pixels
    _, got = example.predict(exported, files)
    assert np.abs(got - expected).max() < TOLERANCE


def test_without_the_export_extra_one_line_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "no.ckpt"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "needs onnxruntime, not installed here" in error and INSTALL_HINT in error
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "no.ckpt"), "--format", "tflite", "--out", str(tmp_path / "out")])
    assert "--format tflite is not supported; choose one of onnx" in capsys.readouterr().err


@pytest.mark.slow  # needs the demo_run fixture (a two-step fine-tune)
def test_a_trained_runs_export_reproduces_its_test_predictions(demo_run: Path, demo_prepared: PreparedData,
                                                               tmp_path: Path) -> None:
    best = json.loads((demo_run / "metrics.json").read_text())["best_checkpoint"]
    assert main(["--checkpoint", best, "--format", "onnx"]) == 0  # default folder: <run>/export_onnx
    folder = demo_run / "export_onnx"
    with (demo_run / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))  # finetune.train's test predictions (6 decimals), by dermkit
    path_of = {r.image_id: r.path for r in demo_prepared.source.records}
    classes, got = load_example().predict(folder, [path_of[r["image_id"]] for r in rows])
    expected = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
    assert np.abs(got - expected).max() < TOLERANCE
