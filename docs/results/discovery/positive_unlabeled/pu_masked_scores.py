"""The masked scenarios of ``evaluate`` for a PU model's two readings, on the same test masks:
the presence map (what ``predict`` writes) and the record map (presence × observation, what the
loss fits to the records); optionally a plain model beside them, and the baselines (frequency,
neighbour density, co-presence, fitted on the training cells as ``compare`` does). Thresholds are chosen per
scenario on the validation blocks (Dice-best) for every row alike; AUPRC needs none.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/discovery/positive_unlabeled/pu_masked_scores.py --pu out/pu/quick_pu_seed0.safetensors \
        --plain out/pu/quick_seed0.safetensors
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root

from core.data.build_stack import default_stack_path  # noqa: E402
from core.data.stack import Stack  # noqa: E402
from core.evaluation.baselines import CoPresencePredictor, FrequencyPredictor, NeighbourDensityPredictor  # noqa: E402
from core.evaluation.evaluate import holdout_masks, score_predictor  # noqa: E402
from core.inference.infer import model_output  # noqa: E402
from core.masks.masking import SCENARIOS, MaskSpec  # noqa: E402
from core.masks.tiles import TRAIN, HoldoutSplit, StackTensors  # noqa: E402
from core.model.model_file import load_model  # noqa: E402
from core.model.predictors import ModelPredictor  # noqa: E402
from core.model.pu import PUModel  # noqa: E402
from core.training.validation import EVAL_SEED  # noqa: E402


def scores(pu_path: Path, plain: Optional[Path], stack_path: Path) -> dict[str, dict]:
    model, card = load_model(pu_path)
    if not isinstance(model, PUModel):
        raise SystemExit(f"{pu_path} is not a PU model")
    stack = card.fit_stack(Stack.read(stack_path))
    split = HoldoutSplit.from_dict(card.data["holdout"]["split"])
    spec = MaskSpec.from_dict(card.masking).only("region", species_k=1)
    draws, k = len(stack.species), card.tile_size
    min_valid = float(card.training.get("min_valid", 0.25))
    test = holdout_masks(stack, split, k, "test", min_valid, spec, draws, EVAL_SEED)
    val = holdout_masks(stack, split, k, "val", min_valid, spec, draws, EVAL_SEED)
    tensors = StackTensors(stack, torch.device("cpu"))
    species = list(stack.species)
    n, c = card.model_config.classes, card.model_config.in_channels
    record_model, _ = load_model(pu_path)  # a second copy set to the record output (predict --record)
    rows = {"PU presence (predict's map)": ModelPredictor(model, "presence", c, n),
            "PU record = presence x observation": ModelPredictor(model_output(record_model, "record", pu_path.name),
                                                                 "record", c, n)}
    if plain is not None:
        rows["plain"] = ModelPredictor.from_file(plain)
    train_cells = (split.cell_labels(stack.valid) == TRAIN) & stack.valid
    frequency = FrequencyPredictor.fit(stack.presence, train_cells)
    rows.update({"frequency": frequency, "neighbour density": NeighbourDensityPredictor(frequency.frequency),
                 "co-presence": CoPresencePredictor.fit(stack.presence, train_cells)})
    return {name: score_predictor(p, tensors, test, val, species, None, per_scenario=True).reports
            for name, p in rows.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pu", type=Path, required=True)
    p.add_argument("--plain", type=Path)
    p.add_argument("--stack", type=Path, default=None)
    args = p.parse_args()
    result = scores(args.pu, args.plain, args.stack or Path(default_stack_path()))
    print(f"{'predictor':<38}" + "".join(f"{sc + ' Dice':>14}{sc + ' AUPRC':>14}" for sc in SCENARIOS))
    for name, reports in result.items():
        print(f"{name:<38}" + "".join(f"{reports[sc]['overall']['dice']:>14.3f}{reports[sc]['overall']['auprc']:>14.3f}"
                                      for sc in SCENARIOS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
