"""Lifelong re-ID domains: the fixed splits (real PETA / CUHK03-subset when present)."""
from __future__ import annotations

from pathlib import Path

import pytest

from personlens.data.reid_domains import (ORDERS, SEEN_DOMAINS, UNSEEN_DOMAINS, domain_order,
                                          ilids_trials, load_domain)

SHARED = Path(__file__).resolve().parents[2].parent / "shared/data"
PETA = SHARED / "PETA"
CUHK03 = SHARED / "CUHK03-subset"
real = pytest.mark.skipif(not ((PETA / "identities.csv").exists() and (CUHK03 / "val").is_dir()),
                          reason="real PETA / CUHK03-subset not found")


def test_orders_are_the_seen_domains_both_ways():
    assert ORDERS["large-to-small"] == SEEN_DOMAINS
    assert ORDERS["small-to-large"] == tuple(reversed(SEEN_DOMAINS))
    with pytest.raises(ValueError, match="unknown order"):
        domain_order("random")


def test_unknown_domain_and_missing_root_are_clear():
    with pytest.raises(ValueError, match="unknown domain 'market'.*seen: cuhk03"):
        load_domain("market", PETA, CUHK03)
    with pytest.raises(ValueError, match="needs the CUHK03-subset root"):
        load_domain("cuhk03", PETA, None)


@real
@pytest.mark.parametrize("name", SEEN_DOMAINS)
def test_seen_split_keeps_test_persons_out_of_training(name):
    d = load_domain(name, PETA, CUHK03)
    t = d.trials[0]
    test_ids = {it.pid for it in (*t.query, *t.gallery)}
    if name == "cuhk03":     # another folder: ids are numbered apart
        assert {it.path.parent.name for it in d.train} == {"train"}
    else:
        assert not test_ids & {it.pid for it in d.train}
    # every query has a true match in another camera (or later in time)
    for q in t.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in t.gallery), q
    assert not set(t.query) & set(t.gallery)
    # fixed: the same split every time
    assert load_domain(name, PETA, CUHK03).trials[0].query == t.query


@real
def test_seen_domain_sizes_are_those_documented():
    sizes = {n: (load_domain(n, PETA, CUHK03).num_train_ids, len(load_domain(n, PETA, CUHK03).trials[0].query))
             for n in SEEN_DOMAINS}
    assert sizes == {"cuhk03": (743, 100), "towncentre": (115, 107), "3dpes": (111, 82),
                     "caviar": (47, 25)}


@real
def test_towncentre_matches_are_later_in_time():
    d = load_domain("towncentre", PETA, CUHK03)
    assert all(q.camid == 1 for q in d.trials[0].query)


@real
def test_unseen_domains_have_ten_trials_and_no_training():
    for name in UNSEEN_DOMAINS:
        d = load_domain(name, PETA, CUHK03)
        assert d.train == [] and len(d.trials) == 10


@real
def test_ilids_trials():
    trials = ilids_trials(PETA, n_trials=3)
    assert [len(t.query) for t in trials] == [60, 60, 60]
    assert trials[0].query != trials[1].query
    assert ilids_trials(PETA, n_trials=1)[0].query == trials[0].query   # trial t is fixed
    with pytest.raises(ValueError, match="n_test"):
        ilids_trials(PETA, n_test=500)


@real
@pytest.mark.parametrize("name", SEEN_DOMAINS)
def test_validation_split_holds_out_training_persons_and_never_a_test_person(name):
    test = load_domain(name, PETA, CUHK03)
    val = load_domain(name, PETA, CUHK03, split="val")
    t = val.trials[0]
    val_ids = {it.pid for it in (*t.query, *t.gallery)}
    train_ids = {it.pid for it in test.train}
    assert val_ids <= train_ids                                   # taken from the training persons
    assert not val_ids & {it.pid for it in val.train}            # and no longer trained on
    assert {it.pid for it in val.train} | val_ids == train_ids   # nobody lost
    test_paths = {it.path for it in (*test.trials[0].query, *test.trials[0].gallery)}
    assert not test_paths & {it.path for it in (*val.train, *t.query, *t.gallery)}
    if name == "cuhk03":                                         # the test protocol's gallery camera
        assert {g.camid for g in t.gallery} == {g.camid for g in test.trials[0].gallery} == {2}
    for q in t.query:                                            # every query has a true match
        assert any(g.pid == q.pid and g.camid != q.camid for g in t.gallery), q
    assert len(t.query) >= 10
    assert load_domain(name, PETA, CUHK03, split="val").trials[0].query == t.query   # fixed


def test_validation_split_is_for_seen_domains_only():
    with pytest.raises(ValueError, match="only seen domains"):
        load_domain("viper", PETA, CUHK03, split="val")
    with pytest.raises(ValueError, match="split must be one of test, val"):
        load_domain("caviar", PETA, CUHK03, split="train")


def test_validation_split_of_a_tiny_domain_is_refused():
    from personlens.data.reid import ReidItem
    from personlens.data.reid_domains import Domain, validation_domain

    items = [ReidItem(Path(f"{p}_{c}.jpg"), p, c) for p in range(3) for c in (1, 2)]
    with pytest.raises(ValueError, match="too few for a validation split"):
        validation_domain(Domain("caviar", items, []))
    four = [ReidItem(Path(f"{p}_{c}.jpg"), p, c) for p in range(4) for c in (1, 2)]
    d = validation_domain(Domain("caviar", four, []))
    assert len(d.trials[0].query) == 2 and len({it.pid for it in d.train}) == 2
    assert all(q.camid == 1 for q in d.trials[0].query)           # CAVIAR's query camera
    cuhk = validation_domain(Domain("cuhk03", four + [ReidItem(Path(f"{p}_1b.jpg"), p, 1) for p in range(4)], []))
    # two camera-A images per person: the unused one stays out of the gallery (A against B,
    # as CUHK03's test protocol)
    assert {q.camid for q in cuhk.trials[0].query} == {1}
    assert {g.camid for g in cuhk.trials[0].gallery} == {2} and len(cuhk.trials[0].gallery) == 2
