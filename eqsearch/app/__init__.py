"""The orchestration layer: the command line, its commands, the demo, measurement and refinement."""
