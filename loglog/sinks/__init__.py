"""Built-in sinks: console, file, Loki, OTLP. Each has ``write(records)``; see loglog.types."""
