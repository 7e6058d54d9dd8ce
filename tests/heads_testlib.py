"""Tiny generated data for the search / re-ID head tests: a PETA root (PETA.mat, images/,
identities.csv with VIPeR rows), a CUHK03-subset root, and random (untrained) heads."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from cli_testlib import noise_image, write_fake_peta


def fake_peta(root: Path, n: int = 16, viper_ids: int = 5) -> Path:
    """``n`` images with random labels (train 1-8, val 9-11, test 12-n) and an identities.csv
    whose first ``2 * viper_ids`` images are VIPeR pairs (camera 1 and 2)."""
    from personlens.data.schema import PETA_ATTRIBUTE_NAMES

    rng = np.random.default_rng(0)
    labels = np.zeros((n, 105))
    for name in ("personalMale", "personalFemale", "carryingBackpack", "upperBodyBlack",
                 "upperBodyRed", "lowerBodyJeans", "accessoryHat", "hairLong"):
        labels[:, list(PETA_ATTRIBUTE_NAMES).index(name)] = rng.integers(0, 2, n)
    split = {"train": list(range(1, 9)), "val": [9, 10, 11], "test": list(range(12, n + 1))}
    write_fake_peta(root, labels, split)
    with open(root / "identities.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "file", "subset", "person_id", "camera", "original_name", "width", "height"])
        for i in range(1, n + 1):
            if i <= 2 * viper_ids:
                w.writerow([i, f"{i:05d}.png", "VIPeR", (i + 1) // 2, 2 - i % 2, "x.bmp", 24, 60])
            else:
                w.writerow([i, f"{i:05d}.png", "CUHK", i, "", "x.png", 24, 60])
    return root


def fake_cuhk03(root: Path, train_ids: int = 4, val_ids: int = 3) -> Path:
    """``IIII_KK.jpg`` crops: images 00, 01 (camera 1) and 05, 06 (camera 2) per identity."""
    for split, n, start in (("train", train_ids, 1000), ("val", val_ids, 0)):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        for pid in range(start, start + n):
            base = np.random.default_rng(pid).integers(0, 256, size=3)
            for k in (0, 1, 5, 6):
                img = np.asarray(noise_image(pid * 10 + k, (20, 50)), np.float32) * 0.3 + base * 0.7
                from PIL import Image

                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{pid:04d}_{k:02d}.jpg")
    return root


def random_head(kind: str, out_dir: Path, seed: int = 0) -> Path:
    from personlens.models.embedding import EmbeddingHead, EmbeddingHeadConfig, save_embedding_head

    torch.manual_seed(seed)
    if kind == "search":
        cfg = EmbeddingHeadConfig(kind="search", in_dim=1280, out_dim=384, hidden=16, pool="meanmax",
                                  text_encoder="minilm", query_proj=True, query_dim=384)
    else:
        cfg = EmbeddingHeadConfig(kind="reid", in_dim=1280, out_dim=32, hidden=16, pool="meanmax")
    return save_embedding_head(EmbeddingHead(cfg), out_dir)
