"""inference: a video/image inference runtime instrumented end to end."""
