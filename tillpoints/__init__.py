"""The composition root: the command line, the benchmarks and the demo, the one
place that imports every layer (docs/architecture.md, "Floors")."""
