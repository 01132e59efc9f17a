"""A sweep's end, on the suite's real multirun: its Grad-CAM maps are made while the figure worker draws
the leaderboard's figures, and the page links both."""

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmark.figures import background
from benchmark.report.after_sweep import SweepLeaderboard, build_leaderboard
from benchmark.report.load import collect
from benchmark.report.rows import best_seed_runs
from tests.conftest import CONF, tiny_overrides


def test_the_maps_are_made_while_the_worker_draws_and_the_page_links_both(tiny_sweep, tmp_path):
    root = tiny_sweep.copy_to(tmp_path).root
    overrides = [o for o in tiny_overrides(root) if o != "explain.n_images=0"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "explain.n_images=2"])
    results = root / "results"
    best = best_seed_runs(collect(results).runs, results)
    assert len(best) == 2 and not any((run / "gradcam.png").exists() for run in best)
    background.start()
    try:
        SweepLeaderboard().on_multirun_end(cfg)
        assert not background.drawing()  # the callback ended the worker
    finally:
        background.stop()
    assert all((run / "gradcam.png").stat().st_size > 0 for run in best)
    page = (results / "leaderboard.md").read_text()
    assert page.count("/gradcam.png)") == 2
    figures = sorted(results.glob("figures/*.png"))
    assert len(figures) == 6 and all(f"(figures/{figure.name})" in page for figure in figures)
    written = (results / "leaderboard.md").stat().st_mtime_ns  # the maps it made are in the inputs' digest:
    build_leaderboard(OmegaConf.create({"results_dir": str(results), "report": {"ensemble_k": 0}}))
    assert (results / "leaderboard.md").stat().st_mtime_ns == written  # up to date
