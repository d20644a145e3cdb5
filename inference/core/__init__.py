"""The running pipeline: the stage callables, the queues and batcher between them, the
stage loop that times them all, streams, admission control, drills and the monitor."""
