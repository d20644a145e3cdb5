"""inference: a video/image inference runtime instrumented end to end.

The package is a house of rooms on floors; a module imports only from its own room or
from a room on a lower floor, never up and never sideways (tests/inference/test_rooms.py
enforces it)::

    6  server/  tools/        the HTTP face and ``loglog serve``; loadgen, profile
    5  runtime                the composition root: everything below, assembled
    4  feed/                  decode processes feeding the engine
    3  core/                  the running pipeline: stages, queues, batching, streams,
                              admission, drills, the monitor
    2  media/  analysis/      frames in and out (PyAV); measurement and verdicts
       tuning/  engines/      host tuning (cores, GIL, allocator); ONNX Runtime,
                              TensorRT, PyTorch and the default model
    1  types  errors          the vocabulary: items, stages, engines; exceptions;
       metrics  config        every metric declared; the configuration

Two arrows run up, both named in the test with their reason: the factories in
:data:`inference.types.PIPELINE` build the stage callables of :mod:`inference.core.stages`
when a pipeline is built (an import inside the factory), and :mod:`inference.metrics`
names :class:`~inference.analysis.stats.StageLedger` in a type annotation only.
"""
