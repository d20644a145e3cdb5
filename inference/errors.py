"""Exceptions of the runtime. Foreign exceptions (ONNX Runtime, TensorRT, PyAV) are
translated at the boundary into these, and every message says what to do.

::

    InferenceError
    ├── ConfigError          a bad config or option (fails start-up, or the reload is rejected)
    ├── ModelError           the model file cannot be loaded or is not usable
    ├── EngineError          the engine failed while running a batch
    ├── InputError           a request's payload is not usable (HTTP 4xx)
    │   └── ShapeError       the tensor does not match the model input
    ├── SourceError          a stream source cannot be opened or read
    ├── OverloadedError      the pipeline stayed full; retry shortly (HTTP 503)
    ├── StreamLimitError     too many streams (HTTP 429)
    ├── UnknownStreamError   no such stream (HTTP 404)
    └── DrillError           drills are disabled or the drill is malformed
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every exception raised by the runtime."""

    status = 500


class ConfigError(InferenceError, ValueError):
    status = 422


class ModelError(InferenceError):
    status = 500


class EngineError(InferenceError):
    status = 500


class InputError(InferenceError, ValueError):
    status = 400


class ShapeError(InputError):
    status = 422


class SourceError(InferenceError):
    status = 422


class OverloadedError(InferenceError):
    status = 503


class StreamLimitError(InferenceError):
    status = 429


class UnknownStreamError(InferenceError, KeyError):
    status = 404

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown stream"


class DrillError(InferenceError):
    status = 403
