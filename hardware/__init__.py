"""What we know about the hardware itself, shared by the agent and the runtime.

``hardware.peaks``: dense peak FLOP/s by GPU model (the denominator of MFU). This package
imports nothing of ours, so both ``agent`` and ``inference`` may depend on it.
"""
