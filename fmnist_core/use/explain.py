"""Why a model decided: attribution maps from Captum over the 28x28 input.

Three methods, all Captum's (not our own attribution code):
- ig: Integrated Gradients from a black image (the data set's background);
- occlusion: how much the class score drops when a 4x4 square is blacked out (model-agnostic);
- gradcam: Grad-CAM on the last conv layer, upsampled to 28x28 (conv models only), of the
  layer's activations minus those of a black image: relative to "nothing here", and signed,
  as the other two. Plain Grad-CAM lit the empty border (issue 23): a conv's bias and
  BatchNorm make its output on black non-zero, and the channel weights then paint it. Its
  ReLU is left out: relative to black, the evidence for a class can be all negative (the
  map would then be blank), and blue shows it as for the other methods.

What is explained is the log-probability of the target class, through
scoring.ImageClassifier: one score for every model (tiles averaged for a patching model,
the report's cnn_b softmax handled), and contrastive: pushing toward "Coat" means
pushing away from the other classes, which is the question "why not Coat?" asks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion
from torch import nn

from fmnist_core.base.errors import UserError
from fmnist_core.images.data import CLASSES, IMAGE_SIZE, MEAN, STD, tiles_per_image
from fmnist_core.use.scoring import ImageClassifier

METHODS = {"ig": "Integrated Gradients", "occlusion": "Occlusion", "gradcam": "Grad-CAM"}
BACKGROUND = -MEAN / STD  # a black pixel, normalised: the "nothing here" reference
# Cost per explanation of cnn_c on one thread (bench, section 5), to follow a drawing:
# 32 steps keep IG's completeness error within 5% (tests) at ~30-40 ms. Occlusion's cost is
# one forward pass of a batch of occluded copies: a 4x4 window with stride 3 makes 81 copies
# (~20-60 ms) and still covers every pixel (24 = 8 strides of 3); stride 2 made 169 (~40-115 ms).
IG_STEPS = 32
# Rows (inputs x steps) per forward/backward pass when several inputs are explained at once:
# 24 of resnet_fm's mistakes took 4.3 s at 96 rows, 4.9 s at 256 and 6.7 s at 768 (one thread).
IG_ROWS = 96
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 4, 3
SCALE_PERCENTILE = 99


class ExplainError(UserError):
    """A method or class that does not apply (gradcam on an MLP, an unknown class name)."""


@dataclass
class Explanation:
    heatmap: np.ndarray  # (28, 28) float32 in [-1, 1]: + pushed toward the target, - away
    target: int  # the explained class
    method: str
    probabilities: np.ndarray  # (10,) the model's output for the input

    @property
    def target_name(self) -> str:
        return CLASSES[self.target]


def last_conv_layer(model: nn.Module) -> nn.Conv2d | None:
    """The conv layer closest to the output (the one Grad-CAM looks at), walking the model
    in definition order; None for a model without convolutions."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def methods_for(model: nn.Module) -> list[str]:
    """The methods that apply to `model`: every model gets ig and occlusion."""
    return [m for m in METHODS if m != "gradcam" or last_conv_layer(model) is not None]


def class_index(name_or_index: str | int) -> int:
    """'Coat', 'coat', 'ankle boot' or '4' -> the class index; ExplainError otherwise."""
    text = str(name_or_index).strip()
    if text.isdigit() and int(text) < len(CLASSES):
        return int(text)
    by_name = {c.lower(): i for i, c in enumerate(CLASSES)}
    key = text.lower()
    if key in by_name:
        return by_name[key]
    raise ExplainError(f"unknown class '{text}'; use one of: {', '.join(CLASSES)} (or 0-9)")


def check_method(model: nn.Module, method: str) -> None:
    if method not in METHODS:
        raise ExplainError(f"unknown method '{method}'; use one of: {', '.join(METHODS)}")
    if method not in methods_for(model):
        name = getattr(model, "model_name", type(model).__name__)
        raise ExplainError(f"gradcam needs a conv layer and {name} has none; use ig or occlusion")


def _gradcam(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM over the last conv layer, as a (1, 1, 28, 28) map. A patching model's conv
    layer sees tiles: each tile's map is upsampled to the tile and put back in its place."""
    # Captum hooks the layer while it works; on a copy, a prediction that another thread
    # (another app session) makes with the same cached model meanwhile cannot trip the hook.
    model = copy.deepcopy(model)
    scorer = ImageClassifier(model, log=True).eval()
    layer = _relative_to_black(model, scorer, x)
    cam = LayerGradCam(scorer, layer).attribute(x, target=target, relu_attributions=False)
    if not scorer.tta:
        return _cam_image(cam, scorer.patch)
    # A flip-TTA model's conv layer saw the image, then its mirror: the mirror's map is
    # flipped back, and the two are averaged as the two predictions are.
    original, mirrored = cam.chunk(2)
    return (_cam_image(original, scorer.patch) + _cam_image(mirrored, scorer.patch).flip(-1)) / 2


class _Difference(nn.Module):
    """The conv layer's output minus its output on a black image: the layer Grad-CAM reads."""

    def __init__(self, conv: nn.Conv2d, on_black: torch.Tensor):
        super().__init__()
        self.conv, self.on_black = conv, on_black

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) - self.on_black


class _AddBack(nn.Module):
    """Stands in for the conv layer: the same output (difference + black's), so the model's
    score is unchanged, while Grad-CAM sees the difference (and the same gradients)."""

    def __init__(self, difference: _Difference):
        super().__init__()
        self.difference = difference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.difference(x) + self.difference.on_black


def _relative_to_black(model: nn.Module, scorer: nn.Module, x: torch.Tensor) -> nn.Module:
    """Swap `model`'s (a copy's) last conv layer for _AddBack and return its _Difference.
    The black image goes through the scorer as `x` does (tiles, flip TTA), so the shapes match."""
    conv = last_conv_layer(model)
    assert conv is not None  # only Grad-CAM gets here, and only for a model with convolutions
    seen = []
    hook = conv.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
    with torch.no_grad():
        scorer(torch.full_like(x, BACKGROUND))
    hook.remove()
    name = next(n for n, m in model.named_modules() if m is conv)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    difference = _Difference(conv, seen[0])
    setattr(parent, name.rpartition(".")[2], _AddBack(difference))
    return difference


def _cam_image(cam: torch.Tensor, patch: int) -> torch.Tensor:
    """One view's layer map as a (1, 1, 28, 28) image; a patching model's tiles put back in place."""
    if not patch:
        return LayerAttribution.interpolate(cam, (IMAGE_SIZE, IMAGE_SIZE), interpolate_mode="bilinear")
    per_side = IMAGE_SIZE // patch
    tiles = LayerAttribution.interpolate(cam, (patch, patch), interpolate_mode="bilinear")  # (k, 1, P, P)
    assert tiles.shape[0] == tiles_per_image(patch)
    grid = tiles.reshape(per_side, per_side, patch, patch).permute(0, 2, 1, 3)  # rows of tiles, then pixels
    return grid.reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)


def attribution(model: nn.Module, x: torch.Tensor, target: int, method: str = "ig") -> torch.Tensor:
    """Captum's attribution of class `target` for one normalised input (1, 1, 28, 28),
    as a (28, 28) tensor, unscaled."""
    return attributions(model, x.reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE), [target], method)[0]


def attributions(model: nn.Module, x: torch.Tensor, targets: list[int], method: str = "ig") -> torch.Tensor:
    """attribution() of N normalised inputs (N, 1, 28, 28), each for its own target class, as
    (N, 28, 28): one Captum call for ig and occlusion (each input's map is its own: the model is
    in eval mode, so no input changes another's score)."""
    check_method(model, method)
    model.eval()  # dropout off and BatchNorm on its running statistics, as in prediction
    scorer = ImageClassifier(model, log=True).eval()
    device = next(model.parameters()).device
    x = x.detach().reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE).float().to(device)
    with torch.enable_grad():  # the app may call this from an inference_mode context
        if method == "ig":
            result = IntegratedGradients(scorer).attribute(x, baselines=torch.full_like(x, BACKGROUND), target=list(targets),
                                                           n_steps=IG_STEPS, internal_batch_size=max(IG_ROWS, len(x)))
        elif method == "occlusion":
            positions = ((IMAGE_SIZE - OCCLUSION_WINDOW) // OCCLUSION_STRIDE + 1) ** 2
            result = Occlusion(scorer).attribute(x, sliding_window_shapes=(1, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
                                                 strides=(1, OCCLUSION_STRIDE, OCCLUSION_STRIDE), baselines=BACKGROUND,
                                                 target=list(targets), perturbations_per_eval=positions)
        else:  # a copy of the model per input (see _gradcam)
            result = torch.cat([_gradcam(model, x[i : i + 1], target) for i, target in enumerate(targets)])
    return result.detach().reshape(-1, IMAGE_SIZE, IMAGE_SIZE).float().cpu()


def explain(model: nn.Module, image: np.ndarray | torch.Tensor, target: int | None = None, method: str = "ig") -> Explanation:
    """Explain one input: a uint8 (28, 28) model input (as inference.to_model_input makes)
    or a normalised float tensor (1, 1, 28, 28). `target` None = the top class."""
    return _explain(model, _as_normalised(image), [target], method)[0]


def explain_many(model: nn.Module, images: np.ndarray, targets: list[int | None], method: str = "ig") -> list[Explanation]:
    """explain() of uint8 (N, 28, 28) model inputs, each for its own target, in one batch:
    Compare's grid of 24 mistakes is one attribution call, not 24."""
    x = torch.cat([_as_normalised(image) for image in images]) if len(images) else torch.zeros(0, 1, IMAGE_SIZE, IMAGE_SIZE)
    return _explain(model, x, targets, method)


def _explain(model: nn.Module, x: torch.Tensor, targets: list[int | None], method: str) -> list[Explanation]:
    if not len(x):
        return []
    with torch.no_grad():
        probabilities = ImageClassifier(model.eval())(x.to(next(model.parameters()).device)).float().cpu().numpy()
    chosen = [int(p.argmax()) if target is None else target for p, target in zip(probabilities, targets)]
    for target in chosen:
        if not 0 <= target < len(CLASSES):
            raise ExplainError(f"class index {target} is out of range; use 0 to {len(CLASSES) - 1}")
    raw = attributions(model, x, chosen, method).numpy().astype(np.float32)
    return [Explanation(_scaled(r), target, method, p) for r, target, p in zip(raw, chosen, probabilities)]


def _scaled(raw: np.ndarray) -> np.ndarray:
    # Scaled so the 99th percentile of |attribution| is 1 and clipped, as Captum's own
    # visualisation does: scaled by the maximum, one extreme pixel would fade the rest.
    scale = float(np.percentile(np.abs(raw), SCALE_PERCENTILE)) or float(np.abs(raw).max())
    return np.clip(raw / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(raw)


def _as_normalised(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.shape != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected a uint8 (28, 28) model input, got {image.dtype} {image.shape}")
        return (torch.from_numpy(image).float().div(255.0).sub(MEAN).div(STD)).reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return image.detach().float().reshape(1, 1, IMAGE_SIZE, IMAGE_SIZE)


POSITIVE = np.array([255, 64, 32], np.float32)  # toward the class: red
NEGATIVE = np.array([40, 120, 255], np.float32)  # away from it: blue
STRENGTH = 0.85  # opacity of the strongest evidence; the item stays visible under it


def overlay(image: np.ndarray, heatmap: np.ndarray, scale: int = 5) -> np.ndarray:
    """The heatmap laid over the 28x28 gray input: red where pixels pushed toward the
    class, blue where they pushed away, opacity growing with |heat|. Returns uint8
    (28 * scale, 28 * scale, 3), each pixel a scale x scale block so it stays crisp when
    shown large."""
    gray = np.repeat(np.asarray(image, np.float32)[..., None], 3, axis=2) * 0.5  # dimmed so the colour reads
    heat = np.clip(np.asarray(heatmap, np.float32), -1.0, 1.0)[..., None]
    colour = np.where(heat >= 0, POSITIVE, NEGATIVE)
    alpha = STRENGTH * np.abs(heat)
    blended = gray * (1 - alpha) + colour * alpha
    pixels = np.clip(blended.round(), 0, 255).astype(np.uint8)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)
