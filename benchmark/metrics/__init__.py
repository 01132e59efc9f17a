"""Metrics: the metric table (table.py), their formulas (scores.py), test-set evaluation with bootstrap
intervals (evaluate.py, bootstrap.py), the predictions table (predictions.py) and deployment cost
(efficiency.py)."""
