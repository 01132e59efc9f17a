"""Training strategies: `frozen` (cached features, head only), `finetune` (two phases through tf.data),
and the probes `linear` and `knn` (scikit-learn on the frozen features).

A strategy is a function (cfg, dataset, spec, backbone, image_size) -> Trained; `train.mode` picks one
from STRATEGIES. A new strategy is one module here and one line below (and conf/train/<name>.yaml; the
TensorFlow-free facts of the regimes, `PROBES` and `ON_CACHED_FEATURES`, are in benchmark/runs/identity.py).
"""

from benchmark.train.finetune import train_finetune
from benchmark.train.frozen import train_frozen
from benchmark.train.probes import train_knn, train_linear

STRATEGIES = {"frozen": train_frozen, "finetune": train_finetune, "linear": train_linear, "knn": train_knn}
