"""The stage callables (the factories in :data:`inference.types.PIPELINE` build them from
a :class:`StageKit`). Each takes and returns a list of items.

They are plain callables on purpose: the pipeline times, counts and traces them; they
only transform items. ``infer`` wraps the engine: it stacks a batch, runs it, splits the
outputs back onto the items.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..errors import InputError, ShapeError
from ..media.video import decode_image, resize_rgb
from ..types import Engine, EngineInfo, Item


def check_finite(array: np.ndarray) -> None:
    """A float or complex tensor with NaN or infinity is a client error (422), not a
    result full of nulls."""
    if array.dtype.kind in "fc" and not bool(np.isfinite(array).all()):
        raise ShapeError("the tensor holds NaN or infinite values: send finite numbers")


class Decode:
    """HTTP bodies into pictures or tensors: JPEG/PNG are decoded (to the decoder's frame),
    .npy arrays loaded.

    A uint8 H×W×3 (or ×1) array is a picture and goes through preprocess; any other array
    is a tensor, checked against the model input here. Stream frames arrive decoded.
    """

    def __init__(self, preprocess: Preprocess) -> None:
        self._check = preprocess.check
        self.calls = 0  # HTTP decode calls (the monitor: did HTTP bodies come in?)

    def __call__(self, items: list[Item]) -> list[Item]:
        self.calls += 1
        for item in items:
            body, item.payload = item.payload, None
            if body is None:
                continue
            if item.payload_kind == "npy":
                array = parse_npy(body)
                if array.ndim == 3 and array.shape[-1] in (1, 3) and array.dtype == np.uint8:
                    item.image = array if array.shape[-1] == 3 else np.repeat(array, 3, axis=2)
                else:
                    # The server checked the .npy header (shape, size) before the body
                    # came in; finiteness needs the values, so it is checked here (422).
                    item.tensor = self._check(array)
                    check_finite(item.tensor)
            else:
                # The decoder's frame (YUV for a JPEG), not RGB: preprocess resizes it to
                # the model's size in one swscale pass (resize_rgb takes both).
                item.image = decode_image(body, item.payload_type or None, as_frame=True)
        return items


class Infer:
    """The engine as a stage: one ``engine.run`` per batch. ``on_done(ok)`` is told how
    many items succeeded (the pipeline counts FLOPs with it)."""

    def __init__(self, engine: Engine, on_done: Callable[[int], None] | None = None) -> None:
        self._run = engine.run
        self._on_done = on_done

    def __call__(self, items: list[Item]) -> list[Item]:
        outputs = self._run(np.stack([item.tensor for item in items]))  # type: ignore[misc]
        for index, item in enumerate(items):
            item.outputs = {name: value[index] for name, value in outputs.items()}
            item.tensor = None
        if self._on_done is not None:
            self._on_done(len(items))
        return items


_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
_INV_STD = 1.0 / (np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255)
_MEAN_CHW = _MEAN.reshape(3, 1, 1)
_INV_STD_CHW = _INV_STD.reshape(3, 1, 1)


class Preprocess:
    """Resize (swscale) and normalise a picture into the model's input tensor."""

    def __init__(self, info: EngineInfo, *, keep_images: set[str] | None = None) -> None:
        #: streams whose pictures the encode stage re-encodes: keep them past preprocess
        self.keep_images = keep_images if keep_images is not None else set()
        self.shape = info.input_shape
        self.dtype = np.dtype(info.input_dtype)
        shape = self.shape
        if len(shape) == 3 and shape[0] in (1, 3):
            self.layout, self.channels, self.height, self.width = (
                "chw",
                shape[0],
                shape[1],
                shape[2],
            )
        elif len(shape) == 3 and shape[2] in (1, 3):
            self.layout, self.channels, self.height, self.width = (
                "hwc",
                shape[2],
                shape[0],
                shape[1],
            )
        else:
            self.layout, self.channels, self.height, self.width = "", 0, 0, 0

    def __call__(self, items: list[Item]) -> list[Item]:
        for item in items:
            if item.tensor is None:
                item.tensor = self.tensor(item.image)
            if item.stream not in self.keep_images:
                item.image = None  # the tensor is all the rest of the pipeline needs
        return items

    def tensor(self, image: Any) -> np.ndarray:
        if not self.layout:
            raise InputError(
                f"the model input {self.shape} is not an image: send a .npy tensor of that shape"
            )
        rgb = resize_rgb(image, self.width, self.height)
        if self.channels == 1:
            pixels = rgb.mean(axis=2, keepdims=True, dtype=np.float32) / 255.0
        elif self.dtype == np.uint8:
            pixels = rgb
        else:
            # Normalise straight into the model's layout, in place: one pass, no
            # temporaries (0.07 ms instead of 0.49 ms for 224×224 with astype/transpose).
            chw = self.layout == "chw"
            source = rgb.transpose(2, 0, 1) if chw else rgb
            out = np.empty(source.shape, np.float32)
            np.subtract(source, _MEAN_CHW if chw else _MEAN, out=out, casting="unsafe")
            np.multiply(out, _INV_STD_CHW if chw else _INV_STD, out=out)
            return out if self.dtype == np.float32 else out.astype(self.dtype)
        if self.layout == "chw":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=self.dtype)

    def check(self, tensor: np.ndarray) -> np.ndarray:
        """Validate a tensor sent by a client; return it in the model's dtype."""
        if tuple(tensor.shape) != self.shape:
            raise ShapeError(
                f"model input is {'×'.join(map(str, self.shape))}, got "
                f"{'×'.join(map(str, tensor.shape))}: send a tensor of the model's shape "
                "(without the batch dimension), or an image and let the server resize it"
            )
        if not np.issubdtype(tensor.dtype, np.number):
            raise ShapeError(f"tensor dtype {tensor.dtype} is not numeric: send {self.dtype}")
        return np.ascontiguousarray(tensor, dtype=self.dtype)


def parse_npy(data: bytes) -> np.ndarray:
    """Load a .npy payload without pickles; a clear error when it is not one."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            f"the body is not a valid .npy array ({exc}): save it with numpy.save"
        ) from exc
    if not isinstance(array, np.ndarray):
        raise InputError("the .npy body must hold one array")
    return array


class Postprocess:
    """Top-k classes from a logits vector; other outputs are summarised by shape."""

    def __init__(
        self, info: EngineInfo, *, top_k: int = 5, labels: list[str] | None = None
    ) -> None:
        self.output = info.output_names[0]
        self.top_k = top_k
        self.labels = labels

    def __call__(self, items: list[Item]) -> list[Item]:
        for item in items:
            outputs = item.outputs or {}
            logits = outputs.get(self.output)
            if logits is not None and logits.ndim == 1:
                shifted = logits.astype(np.float64) - logits.max()
                probs = np.exp(shifted)
                probs /= probs.sum()
                top = np.argsort(probs)[::-1][: self.top_k]
                item.result = {
                    "top": [
                        {"class": int(i), "label": self._label(int(i)), "score": round(float(p), 6)}
                        for i, p in zip(top, probs[top], strict=True)
                    ]
                }
            else:
                item.result = {
                    "outputs": {
                        name: {"shape": list(value.shape), "mean": float(np.mean(value))}
                        for name, value in outputs.items()
                    }
                }
            item.outputs = None  # raw outputs are not needed past this point
        return items

    def _label(self, index: int) -> str:
        if self.labels and index < len(self.labels):
            return self.labels[index]
        return f"class_{index}"


class Encode:
    """The last stage: a result line per stream frame (JSON lines) and, for streams that
    asked for it, the frame re-encoded with its top class drawn on it."""

    def __init__(self, results_path: str | None = None) -> None:
        self._out: TextIO | None = None
        if results_path:
            Path(results_path).parent.mkdir(parents=True, exist_ok=True)
            self._out = open(results_path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.recorders: dict[str, Any] = {}
        self._lock = threading.Lock()  # encode may run on several workers

    def __call__(self, items: list[Item]) -> list[Item]:
        for item in items:
            if item.future is not None:
                continue  # HTTP requests are answered by the pipeline, not written here
            if self._out is not None:
                line = json.dumps(
                    {"stream": item.stream, "frame": item.frame, "pts": item.pts,
                     "outputs": item.result, "latency_ms": round(sum(item.stage_ms.values()), 3)}
                )  # fmt: skip
                with self._lock:
                    self._out.write(line + "\n")
            if item.image is not None and item.stream in self.recorders:
                frame = annotate(item)
                with self._lock:  # the recorder may be detached meanwhile: look up under lock
                    recorder = self.recorders.get(item.stream)
                    if recorder is not None:
                        recorder.add(frame)
        return items

    def attach(self, stream: str, recorder: Any) -> None:
        with self._lock:
            self.recorders[stream] = recorder

    def detach(self, stream: str) -> None:
        """Stop recording ``stream`` and close its file (never during a write)."""
        with self._lock:
            recorder = self.recorders.pop(stream, None)
            if recorder is not None:
                recorder.close()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


@dataclasses.dataclass(frozen=True, slots=True)
class StageKit:
    """The parts the stage factories of :data:`inference.types.PIPELINE` build from,
    passed once, when the pipeline is built. ``on_infer(ok)`` is told how many items
    each engine call finished (the pipeline counts FLOPs with it)."""

    engine: Engine
    preprocess: Preprocess
    postprocess: Postprocess
    encode: Encode
    on_infer: Callable[[int], None] | None = None


def annotate(item: Item) -> np.ndarray:
    """Draw the top class as a coloured bar whose length is its score (no font needed)."""
    from ..media.video import to_rgb

    rgb = to_rgb(item.image).copy()
    top = (item.result or {}).get("top") or [{"class": 0, "score": 0.0}]
    cls, score = top[0]["class"], top[0]["score"]
    color = np.array([(cls * 67) % 256, (cls * 139) % 256, (cls * 29) % 256], dtype=np.uint8)
    height = max(8, rgb.shape[0] // 24)
    rgb[:height, :] = 0
    rgb[:height, : max(1, int(rgb.shape[1] * score))] = color
    return rgb
