"""Exceptions of the runtime. Foreign exceptions (ONNX Runtime, TensorRT, PyAV) are
translated at the boundary into these, and every message says what to do.

::

    InferenceError
    ├── ConfigError          a bad config or option (fails start-up, or the reload is rejected)
    ├── ModelError           the model file cannot be loaded or is not usable
    ├── EngineError          the engine failed while running a batch
    ├── InputError           a request's payload is not usable (HTTP 4xx)
    │   ├── ShapeError       the tensor does not match the model input, or is not finite (422)
    │   ├── TooLargeError    the body, image or tensor is over a configured limit (HTTP 413)
    │   └── BodyTimeoutError the body did not arrive within body_timeout_s (HTTP 408)
    ├── SourceError          a stream source cannot be opened or read
    │   └── BudgetError      the streams' pixel-rate budget would be exceeded (HTTP 422)
    ├── AuthError            a mutating endpoint without the right bearer token (HTTP 401)
    ├── OverloadedError      the pipeline stayed full; retry shortly (HTTP 503)
    │   └── ShedError        a request shed by admission control, with Retry-After (HTTP 503)
    ├── StreamLimitError     too many streams (HTTP 429)
    ├── UnknownStreamError   no such stream (HTTP 404)
    ├── DrillError           drills are disabled (HTTP 403)
    └── DrillInputError      the drill is malformed (HTTP 422)
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


class TooLargeError(InputError):
    status = 413


class BodyTimeoutError(InputError):
    status = 408


class SourceError(InferenceError):
    status = 422


class BudgetError(SourceError):
    status = 422


class AuthError(InferenceError):
    status = 401


class OverloadedError(InferenceError):
    status = 503


class ShedError(OverloadedError):
    """A request refused (or dropped from a queue) so that those admitted meet their
    deadlines. ``reason`` is the label of ``inference_requests_shed_total``, ``limit`` the
    setting that decided it, ``retry_after`` whole seconds for the Retry-After header."""

    status = 503

    def __init__(self, message: str, *, reason: str, limit: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.limit = limit
        self.retry_after = max(1, int(retry_after))


class StreamLimitError(InferenceError):
    status = 429


class UnknownStreamError(InferenceError, KeyError):
    status = 404

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown stream"


class DrillError(InferenceError):
    status = 403


class DrillInputError(DrillError):
    status = 422
