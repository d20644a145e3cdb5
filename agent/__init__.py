"""agent: the node agent exporting GPU (NVML) and host metrics."""
