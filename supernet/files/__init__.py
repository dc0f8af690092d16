"""Files: supernet checkpoints and initial (pretrained) weights."""
