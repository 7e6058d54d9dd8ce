"""Shared test setup: one torch thread, and the small real PAR model every suite can use."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# Test inputs are tiny: one thread is faster than several fighting over busy cores
# (a 2-thread efficientnet forward took 2 s instead of 20 ms beside a training job).
torch.set_num_threads(1)

# Plain helper modules (cli_testlib, crops_testlib) are importable from every test folder.
for _d in (Path(__file__).parent, Path(__file__).parent / "cli"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))


@pytest.fixture(scope="session")
def par_model_dir(tmp_path_factory) -> Path:
    """A real (untrained) cross-attention PAR model saved with ``save_par``."""
    from cli_testlib import FIXTURE_ATTRIBUTES, FIXTURE_THRESHOLDS

    from personlens.data.schema import PETA_SCHEMA
    from personlens.models.io import save_par
    from personlens.models.par import HeadConfig
    from personlens.train.par import TrainConfig, build_model

    torch.manual_seed(0)
    names = list(FIXTURE_ATTRIBUTES)
    model = build_model(TrainConfig(head=HeadConfig(kind="cross_attention")), names,
                        PETA_SCHEMA.subset(names))
    model.config.thresholds = list(FIXTURE_THRESHOLDS)
    return save_par(model, tmp_path_factory.mktemp("par-model"))


@pytest.fixture(scope="session")
def pipeline(par_model_dir):
    """A ``PersonPipeline`` on the fixture model (baseline search and re-ID), loaded once."""
    from personlens.inference.pipeline import PersonPipeline

    return PersonPipeline(par_model_dir, search_head=None, reid_head=None)
