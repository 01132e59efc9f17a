"""Honest transfer-learning benchmarks of ImageNet backbones on medical images."""
