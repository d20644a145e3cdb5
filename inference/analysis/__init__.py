"""What the runtime measures about itself and what it concludes: stage ledgers
(:mod:`.stats`), traces, capacity calibration, FLOPs, and the bottleneck verdict
(:mod:`.bottleneck`, with :mod:`.shared` for decode processes)."""
