"""medbench's Hydra plugins: the sweeper (conf/hydra/sweeper/compose_once.yaml) and the bounded local submitit
launcher (conf/hydra/launcher/slurm_local.yaml); Hydra finds plugins in this package."""
