"""Export: every model's ONNX/TorchScript file gives PyTorch's probabilities; the CLI, the
model card and the README's onnxruntime snippet work on real files."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from fmnist_core.analysis.metrics import analyze
from fmnist_core.analysis.model_card import rebuild_command
from fmnist_core.commands.cli import _config_from_args, build_parser, main
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.images.data import CLASSES, MEAN, STD, load_fashion_mnist, normalize
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import create_model, list_models, model_info
from fmnist_core.use.export import INPUT_NAME, OUTPUT_NAME, TOLERANCE, ExportedModel, check_export, export_bytes
from fmnist_core.use.scoring import evaluate
from tests.helpers.paths import ROOT

CNN_C = ROOT / "checkpoints" / "pretrained" / "cnn_c_report"
SUBSET = 256


def small(name: str, **kwargs):
    """A random-init model of the registry, narrow where it has a width (equality does not
    need training; a narrow net exports and runs faster)."""
    torch.manual_seed(0)
    if model_info(name).takes_width:
        kwargs.setdefault("width", 8)
    return create_model(name, **kwargs).eval()


VARIANTS = [(name, {}) for name in list_models()] + [
    ("mlp4", {"image_size": 14}),  # patching: tiles and their mean inside the graph
    ("cnn_c", {"image_size": 7}),
    ("cnn_b", {"softmax_output": True}),  # the report's softmax quirk: no second softmax
]


@pytest.fixture(scope="module")
def subset():
    data = load_fashion_mnist()
    return normalize(data.test_images[:SUBSET]), data.test_labels[:SUBSET]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name, kwargs", VARIANTS, ids=[f"{n}{kw}" for n, kw in VARIANTS])
def test_every_model_exports_and_matches_pytorch(name, kwargs, fmt, subset):
    model = small(name, **kwargs)
    data = export_bytes(model, fmt)
    images, labels = subset
    check = check_export(model, data, fmt, images, labels)
    assert check.images == SUBSET
    assert check.max_difference <= TOLERANCE
    assert check.export_accuracy == check.torch_accuracy
    exported = ExportedModel(data, fmt)
    for batch in (1, 3):  # the batch dimension is dynamic
        assert exported(images[:batch].numpy()).shape == (batch, 10)
    probabilities = exported(images[:8].numpy())
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)  # probabilities, not logits (nor a double softmax)


def test_onnx_file_carries_names_and_preprocessing():
    model = small("cnn_a")
    proto = onnx.load_from_string(export_bytes(model, "onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == list(CLASSES)
    assert float(props["mean"]) == MEAN and float(props["std"]) == STD
    assert "NCHW" in props["input_layout"] and props["model"] == "cnn_a"
    (graph_input,) = proto.graph.input
    assert graph_input.name == INPUT_NAME
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]


def test_cli_export_with_model_card(tmp_path, capsys, real_data):
    out = tmp_path / "cnn_c.onnx"
    code = main(["export", str(CNN_C), "--format", "onnx", "--out", str(out), "--card", "--check-images", str(SUBSET)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    difference = float(re.search(r"largest difference of a probability from PyTorch (\S+) ", printed).group(1))
    assert difference <= TOLERANCE
    assert f"on {SUBSET} test images" in printed

    card = (tmp_path / "cnn_c.md").read_text()
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"SHA-256: `{digest}`" in card and digest in printed

    # The card's numbers are evaluate()'s and analyze()'s on the test set.
    loaded_model = load_checkpoint(CNN_C).model
    scores = evaluate(loaded_model, normalize(real_data.test_images), real_data.test_labels)
    assert f"Test accuracy: {scores['accuracy']:.2f}% on 10,000 images" in card
    assert f"Test loss (mean negative log-likelihood): {scores['loss']:.4f}" in card
    analysis = analyze(loaded_model, real_data)
    for name, accuracy in zip(CLASSES, analysis.per_class_accuracy):
        assert f"| {name} | {accuracy:.2f} |" in card
    matrix_rows = [line for line in card.splitlines() if line.startswith("| ") and line.count("|") == 12][1:]
    assert [[int(v) for v in row.strip("| ").split(" | ")[1:]] for row in matrix_rows] == analysis.matrix
    assert "- Training time: 270 s (4 min 30 s)" in card

    # The command on the card rebuilds the same config.
    command = re.search(r"```sh\n(.*)\n```", card).group(1)
    assert command.startswith("python -m fmnist_core train --model cnn_c --optimizer sgd --lr 0.01")
    args = build_parser().parse_args(shlex.split(command)[3:])
    saved = json.loads((CNN_C / "config.json").read_text())
    assert _config_from_args(args).to_dict() == TrainConfig.from_dict({**saved}).to_dict()


def test_rebuild_command_flags_come_from_the_settings():
    config = TrainConfig(model="resnet_fm", lr=0.1, nesterov=True, augment=True, width=16, name="my run").to_dict()
    command = rebuild_command(config)
    assert command.startswith("python -m fmnist_core train --model resnet_fm --optimizer sgd --lr 0.1 --momentum 0.9 --nesterov ")
    assert " --augment " in command and " --no-channels-last " in command and " --width 16 " in command
    assert command.endswith(" --name 'my run'") and "--dropout" not in command  # None: the model's own default
    args = build_parser().parse_args(shlex.split(command)[3:])
    assert _config_from_args(args).to_dict() == TrainConfig.from_dict(config).to_dict()


def test_cli_export_torchscript(tmp_path, capsys):
    code = main(["export", str(CNN_C), "--format", "torchscript", "--out", str(tmp_path), "--check-images", "64"])
    printed = capsys.readouterr().out
    assert code == 0 and "checked with torch.jit.load on 64 test images" in printed
    assert (tmp_path / "cnn_c_report.pt").is_file()


@pytest.mark.parametrize("case, words", [
    ("missing", "checkpoint not found"),
    ("format", "unsupported format 'tflite'; use one of: onnx, torchscript"),
    ("unwritable", "cannot write"),
    ("check", "--check-images 0 is out of range"),
])
def test_cli_export_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, words):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = {
        "missing": ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.onnx")],
        "format": ["export", str(CNN_C), "--format", "tflite", "--out", str(tmp_path / "x.onnx")],
        "unwritable": ["export", str(CNN_C), "--out", str(blocker / "x.onnx")],
        "check": ["export", str(CNN_C), "--check-images", "0", "--out", str(tmp_path / "x.onnx")],
    }[case]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def readme_snippet() -> str:
    """The README's onnxruntime example: the python block of its "Explain and export" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Explain and export", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_classifies_with_onnxruntime_and_no_torch(tmp_path):
    assert main(["export", str(CNN_C), "--out", str(tmp_path / "model.onnx"), "--check-images", "16"]) == 0
    from PIL import Image

    data = load_fashion_mnist()
    Image.fromarray(data.test_images[0].numpy()).save(tmp_path / "item.png")  # an ankle boot
    snippet = readme_snippet()
    assert len(snippet.strip().splitlines()) <= 10
    program = snippet + "\nimport sys\nassert 'torch' not in sys.modules, 'the snippet imported torch'\n"
    result = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("Ankle boot")


# ---- issue 23, item 10: the model card does not export again -------------------------------------

def test_a_model_cards_export_facts_are_kept_beside_the_weights_and_used_only_while_they_match(tmp_path, real_data):
    """The card for resnet_fm_best took 22.6 s: an ONNX export and its check on every click."""
    import os
    import shutil

    from fmnist_core.analysis.export_facts import FACTS_NAME, onnx_facts

    folder = shutil.copytree(ROOT / "checkpoints" / "pretrained" / "cnn_c_report", tmp_path / "run",
                             ignore=shutil.ignore_patterns(FACTS_NAME))
    weights = folder / "model.safetensors"
    facts = onnx_facts(weights, real_data, 200)
    onnx_file = export_bytes(load_checkpoint(weights).model, "onnx")
    assert facts.sha256 == hashlib.sha256(onnx_file).hexdigest() and facts.size_bytes == len(onnx_file)
    assert facts.checked_images == 200 and 0 <= facts.max_difference <= TOLERANCE

    stored = json.loads((folder / FACTS_NAME).read_text())
    assert stored["key"]["torch"] == torch.__version__.split("+")[0] and stored["key"]["checked_images"] == 200
    stored["facts"]["max_difference"] = 5e-5  # a value no export gave: read back, so the file was used
    (folder / FACTS_NAME).write_text(json.dumps(stored))
    assert onnx_facts(weights, real_data, 200).max_difference == 5e-5
    assert onnx_facts(weights, real_data, 100).checked_images == 100  # other images checked: made again
    (folder / FACTS_NAME).write_text(json.dumps(stored))
    fresh = (onnx_file, check_export(load_checkpoint(weights).model, onnx_file, "onnx", normalize(real_data.test_images[:200]),
                                     real_data.test_labels[:200]))
    assert onnx_facts(weights, real_data, 200, fresh).max_difference != 5e-5  # an export in hand states its own facts

    # Facts of other weights (the run was retrained in place) or of another torch: not these weights' facts.
    for changed in ({"weights_sha256": "0" * 64}, {"torch": "2.0.0"}):
        (folder / FACTS_NAME).write_text(json.dumps({**stored, "key": {**stored["key"], **changed}}))
        assert onnx_facts(weights, real_data, 200).max_difference != 5e-5, changed

    # Hostile or damaged files are ignored (and replaced where they are files), never trusted nor waited on.
    stored = json.loads((folder / FACTS_NAME).read_text())
    beyond = {**stored, "facts": {**stored["facts"], "max_difference": 1.0}}  # a check that failed
    for plant in ("fifo", "huge", "garbage", "beyond the tolerance"):
        (folder / FACTS_NAME).unlink()
        if plant == "fifo":
            os.mkfifo(folder / FACTS_NAME)
        elif plant == "huge":
            (folder / FACTS_NAME).write_text(" " * 10**6)
        elif plant == "garbage":
            (folder / FACTS_NAME).write_bytes(b"\xff{not json")
        else:
            (folder / FACTS_NAME).write_text(json.dumps(beyond))
        again = onnx_facts(weights, real_data, 200)
        assert again.sha256 == facts.sha256 and again.max_difference <= TOLERANCE, plant
    assert (folder / FACTS_NAME).is_file() and json.loads((folder / FACTS_NAME).read_text())["facts"] == stored["facts"]


def test_the_shipped_export_facts_are_current_and_what_the_exporter_makes_now(real_data):
    """As the shipped mistake maps: the facts are keyed by EXPORT_VERSION, and a fresh export
    of a shipped model must give what its stored facts say (the bytes' hash varies between
    exports, the largest difference from PyTorch does not, their size within 1%)."""
    from fmnist_core.analysis.export_facts import FACTS_NAME, _key, _stored, checked_onnx

    weights = ROOT / "checkpoints" / "pretrained" / "cnn_c_report" / "model.safetensors"
    record = json.loads(weights.with_name(FACTS_NAME).read_text())
    stored = _stored(weights.with_name(FACTS_NAME), _key(weights, record["key"]["checked_images"]))
    assert stored is not None, "the shipped ONNX facts are stale: rebuild them or bump EXPORT_VERSION"
    data, check = checked_onnx(load_checkpoint(weights).model, real_data, stored.checked_images)
    # The file names the source paths of the exported code (the checkout's folder), so its size
    # moves a little with where the Studio lives: 162,049 bytes here, 162,190 in a CI clone.
    assert len(data) == pytest.approx(stored.size_bytes, rel=0.01)
    assert check.max_difference == pytest.approx(stored.max_difference, rel=1e-3, abs=1e-7)
