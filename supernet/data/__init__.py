"""Data: datasets, transforms, batches and loaders, own datasets and image streams."""
