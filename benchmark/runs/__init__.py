"""Runs: what a run is (identity.py), where it lives (layout.py), how it is made (pipeline.py), what it
records about its making (provenance.py), and the sweep's progress line and final report (progress.py)."""
