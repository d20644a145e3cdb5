"""Frames in and out: PyAV behind :mod:`.video` (its only importer), the sources a stream
reads (:mod:`.sources`) and what a stream may read and write (:mod:`.access`)."""
