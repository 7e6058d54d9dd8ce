from __future__ import annotations

import copy

import numpy as np
import torch
from script_testlib import load_script

from personlens.models.image_encoders import EfficientNetLite0
from personlens.models.lifelong import LifelongReid, LifelongReidConfig

script = load_script("scripts/check_lifelong_normalisation.py")


class _Features:
    def __init__(self, n):
        self.x = torch.randn(n, 2, 192, 2, 2, generator=torch.Generator().manual_seed(0))
        self.x[:, 1] += 5.0                  # the mirrors look different: they must not be read

    def batch(self, rows, views):
        return self.x[torch.as_tensor(rows), torch.as_tensor(views)]


def test_renormalise_reads_only_the_given_plain_crops_and_leaves_the_weights():
    torch.manual_seed(0)
    model = LifelongReid(EfficientNetLite0(pretrained=False).freeze(),
                         LifelongReidConfig(stage=14, embed_dim=16, part_dim=16)).eval()
    feats = _Features(20)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    drop = model._drop
    rows = np.arange(10)
    script.renormalise(model, feats, rows, batch=5)
    assert not model.training and model._drop == drop
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k
    # the neck's statistics are the average over the two batches of the plain crops'
    # embeddings, as the top computed them while reading (each batch by its own statistics)
    probe = copy.deepcopy(model).train()
    probe._drop = 0.0
    with torch.no_grad():
        embs = [probe(feats.batch(rows[s:s + 5], np.zeros(5, int)))["emb"] for s in (0, 5)]
    assert torch.allclose(model.bn.running_mean, sum(e.mean(0) for e in embs) / 2, atol=1e-5)
    assert torch.allclose(model.bn.running_var, sum(e.var(0) for e in embs) / 2, atol=1e-5)
