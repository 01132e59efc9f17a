"""Saliency: Grad-CAM maps with the randomisation sanity check (gradcam.py), and which test images to
explain (explain.py). The overlays are drawn by benchmark.figures.gradcam."""
