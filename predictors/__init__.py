"""Per-device latency/throughput predictors and the accuracy surrogate."""
