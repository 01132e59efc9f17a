"""`python -m benchmark.report`: run directories -> leaderboard.md, leaderboard.csv, runs.csv and figures/.

Reads only what runs wrote to disk (metrics, predictions, histories), so it never imports TensorFlow
and takes seconds.
"""
