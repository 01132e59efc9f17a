"""Training strategies: `frozen` (cached features, head only) and `finetune` (two phases through tf.data).

A strategy is a function (cfg, dataset, spec, backbone, image_size) -> Trained; `train.mode` picks one
from STRATEGIES. A new strategy is one module here and one line below (and conf/train/<name>.yaml).
"""

from benchmark.train.finetune import train_finetune
from benchmark.train.frozen import train_frozen

STRATEGIES = {"frozen": train_frozen, "finetune": train_finetune}
