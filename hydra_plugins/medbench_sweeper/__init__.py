"""medbench's Hydra sweeper (conf/hydra/sweeper/compose_once.yaml); Hydra finds plugins in this package."""
