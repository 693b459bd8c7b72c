"""Image compression for the catalogue: pure, process-pool friendly functions."""
