"""Every PNG the project draws: a run's figures, Grad-CAM overlays and the leaderboard's figures.

Importing any module of this package selects matplotlib's file-only backend first (reports and runs
happen on headless machines); this is the only place that does it.
"""

import matplotlib

matplotlib.use("Agg")
