"""The HTTP face of the runtime (FastAPI) and the ``loglog serve`` entry point."""
