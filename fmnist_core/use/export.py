"""The trained model out of the Studio: ONNX and TorchScript files, checked before they are written.

What is exported is scoring.ImageClassifier: (N, 1, 28, 28) normalised images in,
(N, 10) class probabilities out, with the softmax (or the report's cnn_b softmax
layer) and a patching model's tiling and tile mean inside the graph, so every model
the Studio trains exports. The ONNX file carries what a user needs to feed it (class
names, mean, std, input layout) in its metadata; torch is not needed to run it.

An export is checked, not assumed: the file is run (onnxruntime, or torch.jit.load)
on test images and compared with PyTorch before it is written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_bytes, refuse_non_regular, sha256
from fmnist_core.base.paths import exports_dir
from fmnist_core.images.data import CLASSES, IMAGE_SIZE, MEAN, STD
from fmnist_core.use.scoring import EVAL_BATCH, ImageClassifier, predict_dataset

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
# Linux allows 255 bytes per file name; the atomic write's temp file (".NAME.xxxxxxxx.tmp")
# and the card's ".md" need room beside it.
MAX_OUT_NAME = 200
TOLERANCE = 1e-4  # largest accepted |exported - PyTorch| on any probability
INPUT_LAYOUT = "NCHW float32 (N, 1, 28, 28): grayscale in [0, 1] (light item on black), then (x - mean) / std"
EXAMPLE_BATCH = 2  # torch.export specialises a dimension of size 0 or 1; 2 keeps the batch dynamic


class ExportError(UserError):
    """An export that cannot be made or written: bad format, unwritable path."""


class ExportCheckFailed(RuntimeError):
    """The exported file disagrees with PyTorch: a bug, so nothing is written."""


@dataclass
class ExportCheck:
    images: int
    max_difference: float  # largest |exported - PyTorch| over all probabilities
    torch_accuracy: float  # percent, when labels were given
    export_accuracy: float


@dataclass
class ExportResult:
    path: Path
    format: str
    sha256: str
    size_bytes: int
    check: ExportCheck


def metadata_props(model: nn.Module) -> dict[str, str]:
    """What a consumer of the ONNX file needs, as string key/values (ONNX metadata_props)."""
    return {
        "classes": json.dumps(list(CLASSES)),
        "mean": str(MEAN),
        "std": str(STD),
        "input_layout": INPUT_LAYOUT,
        "output": f"{OUTPUT_NAME}: (N, {len(CLASSES)}) class probabilities, in the order of 'classes'",
        "model": getattr(model, "model_name", type(model).__name__),
        "model_args": json.dumps(getattr(model, "build_args", {})),
        "producer": "Fashion-MNIST Studio",
    }


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unsupported format '{fmt}'; use one of: {', '.join(FORMATS)}")


def onnx_bytes(model: nn.Module) -> bytes:
    """The model as an ONNX file (torch.export-based exporter, dynamic batch size)."""
    import onnx

    scorer = ImageClassifier(model.eval()).eval()
    example = torch.zeros(EXAMPLE_BATCH, 1, IMAGE_SIZE, IMAGE_SIZE)
    # The exporter prints its progress to stdout and warns about its own internals;
    # neither is for a user of `export`.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(scorer, (example,), dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}})
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            assert program is not None  # dynamo=True always returns the program
            program.save(str(path), external_data=False)
            proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata_props(model))
    return proto.SerializeToString()


def torchscript_bytes(model: nn.Module) -> bytes:
    """The model as a traced TorchScript file; the metadata travels as an extra file."""
    scorer = ImageClassifier(model.eval()).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export, but still what many users load
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(scorer, torch.zeros(EXAMPLE_BATCH, 1, IMAGE_SIZE, IMAGE_SIZE))
        torch.jit.save(traced, buffer, _extra_files={"fmnist_metadata.json": json.dumps(metadata_props(model))})
    return buffer.getvalue()


def export_bytes(model: nn.Module, fmt: str) -> bytes:
    """The model as a file of format `fmt`; the file runs on the CPU whatever device the model is on."""
    _check_format(fmt)
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    return onnx_bytes(model) if fmt == "onnx" else torchscript_bytes(model)


class ExportedModel:
    """Runs an exported file the way its users will: onnxruntime for ONNX (no torch
    involved), torch.jit.load for TorchScript."""

    def __init__(self, data: bytes, fmt: str, threads: int | None = None):
        _check_format(fmt)
        self.format = fmt
        if fmt == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, 1, 28, 28) float32 normalised -> (N, 10) probabilities."""
        if self.format == "onnx":
            return self.session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
        with torch.inference_mode():
            return self.module(torch.from_numpy(images)).numpy()


def check_export(model: nn.Module, data: bytes, fmt: str, images: torch.Tensor, labels: torch.Tensor | None = None) -> ExportCheck:
    """Compare the exported file's probabilities with PyTorch's on `images` (N, 1, 28, 28)."""
    expected = predict_dataset(model, images).numpy()
    exported = ExportedModel(data, fmt)
    got = np.concatenate([exported(images[i : i + EVAL_BATCH].numpy()) for i in range(0, len(images), EVAL_BATCH)])
    difference = float(np.abs(got - expected).max()) if len(images) else 0.0
    truth = labels.numpy() if labels is not None else expected.argmax(1)
    return ExportCheck(len(images), difference, 100.0 * float((expected.argmax(1) == truth).mean()),
                       100.0 * float((got.argmax(1) == truth).mean()))


def default_output(checkpoint: Path, fmt: str) -> Path:
    """<run folder name>.onnx (or .pt) in paths.exports_dir()."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.parent.name if checkpoint.suffix == ".safetensors" else checkpoint.name
    return exports_dir() / (stem + FORMATS[fmt])


def ensure_writable(path: Path) -> None:
    """Fail before the slow part when `path` cannot be written; the message says which path and why."""
    path = Path(path)
    if len(path.name) > MAX_OUT_NAME:  # the temp file beside it adds ~15 characters to the name
        raise ExportError(f"the file name '{path.name[:20]}...' is {len(path.name)} characters long; use at most {MAX_OUT_NAME}")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder")
        refuse_non_regular(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"cannot write {path}: {e.strerror or e}; choose another --out") from None


def checked_export(model: nn.Module, fmt: str, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[bytes, ExportCheck]:
    """The exported bytes and their check against PyTorch on `images`: ExportCheckFailed when a
    probability differs by more than TOLERANCE or a prediction changes (the one acceptance rule)."""
    _check_format(fmt)
    data = export_bytes(model, fmt)
    check = check_export(model, data, fmt, images, labels)
    if check.max_difference > TOLERANCE or check.export_accuracy != check.torch_accuracy:
        raise ExportCheckFailed(f"the {fmt} export disagrees with PyTorch on {check.images} test images: max difference "
                                f"{check.max_difference:.2e} (limit {TOLERANCE:.0e}), accuracy {check.export_accuracy:.2f}% vs "
                                f"{check.torch_accuracy:.2f}%; nothing was written")
    return data, check


def export_model(model: nn.Module, fmt: str, out: Path, images: torch.Tensor, labels: torch.Tensor | None = None) -> ExportResult:
    """Export, check against PyTorch on `images`, and only then write `out` (atomically)."""
    _check_format(fmt)
    ensure_writable(out)
    data, check = checked_export(model, fmt, images, labels)
    atomic_write_bytes(Path(out), data)
    return ExportResult(Path(out), fmt, sha256(data), len(data), check)
