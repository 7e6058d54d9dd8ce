"""personlens.eval.report.mean_std: the one formatter of a mean over runs in every table."""
from personlens.eval.report import mean_std


def test_a_spread_is_printed_only_for_several_runs():
    assert mean_std(65.0, 7.071, 2) == "65.00 ± 7.07"
    assert mean_std(35.79, 0.0, 1, digits=1) == "35.8"            # not "35.8 ± 0.0"
    assert mean_std(57.84, 0.0, 1, single=" (one fold)") == "57.84 (one fold)"
    assert mean_std(0.704, 0.1, 4, digits=2, single=" (one)") == "0.70 ± 0.10"
