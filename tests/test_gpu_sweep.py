"""docs/results/masked_scenarios/gpu_sweep/gpu_sweep.py: the selection rule fixed before a sweep
(eligible = aux U-Net above its no-aux twin in Dice and recall in every scenario; then the highest
AUPRC)."""
from script_support import load_script


def _sweep():
    return load_script("docs/results/masked_scenarios/gpu_sweep/gpu_sweep.py")


def _summary(margins, auprc):
    m = {f"{sc} {k}": v for sc, v in zip(("region", "species", "both"), margins) for k in ("dice", "recall")}
    return {"margins": m, "eligible": all(v > 0 for v in m.values()), "auprc": auprc}


def test_the_eligible_candidate_with_the_highest_auprc_is_chosen():
    choose = _sweep().choose
    summaries = {"a": _summary([0.01, 0.01, 0.01], 0.30), "b": _summary([0.02, 0.02, 0.02], 0.29),
                 "c": _summary([0.05, 0.05, -0.001], 0.50), "d": None}
    assert choose(summaries) == ("a", True)


def test_without_an_eligible_candidate_the_closest_is_named_not_eligible():
    choose = _sweep().choose
    summaries = {"a": _summary([0.01, -0.03, 0.01], 0.40), "b": _summary([-0.004, 0.02, 0.02], 0.30), "c": None}
    assert choose(summaries) == ("b", False)
    assert choose({"x": None}) == (None, False)


def test_the_table_marks_unfinished_candidates():
    sweep = _sweep()
    row = {m: {"mean": 0.5, "std": 0.01} for m in ("dice", "recall", "precision", "auprc")}
    done = {**_summary([0.01] * 3, 0.3), **{v: {**{sc: row for sc in ("region", "species", "both")}, "train_wall_s": 200.0}
                                            for v in sweep.VARIANTS}}
    text = sweep.table({"done": done, "cut": None})
    assert "| done (eligible) | unet | 0.500 ± 0.010 / 0.500 / 0.500" in text
    assert "| cut | (not all models finished) |" in text
