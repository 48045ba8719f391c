"""The trainer: kill -9 and --resume end where an uninterrupted run ends; torchrun with 2 CPU
processes (gloo) matches one process with the same global batch; the model file and its card."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.training.checkpoint import read_checkpoint_meta
from core.errors import InputError
from core.model.model_file import load_model
from core.training.presets import PRESETS
from core.data.synthetic import synthetic_stack
from core.masks.tiles import HoldoutSplit
from core.training.train import TrainConfig, Trainer, lr_at, train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--tiles", "60", "--tile-size", "32", "--batch-size", "4", "--block-size", "32",
        "--val-every", "0", "--val-tiles", "4", "--model-option", "decoder_channels=[16,16,8,8,8]"]


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    synthetic_stack(128, 128, n_species=4, n_aux=2, seed=0).write(path)
    return path


def _env(threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def _cli(*args):
    return [sys.executable, str(ROOT / "train_cli.py"), "train", *map(str, args)]


def _params(path):
    t = load_file(str(path))
    return {k: v for k, v in t.items() if "running_" not in k and "num_batches_tracked" not in k}, t


@pytest.mark.slow
def test_kill_9_then_resume_ends_like_an_uninterrupted_run(stack_file, tmp_path):
    common = ["--stack", stack_file, *TINY, "--steps", "16", "--checkpoint-every", "4"]
    ref = tmp_path / "ref.safetensors"
    subprocess.run(_cli(*common, "--out", ref), check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=600)

    out, ckpt = tmp_path / "resumed.safetensors", tmp_path / "ckpt"
    proc = subprocess.Popen(_cli(*common, "--out", out, "--checkpoint-dir", ckpt), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (ckpt / "checkpoint.safetensors").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = read_checkpoint_meta(ckpt)["step"]
    assert 0 < killed_at < 16 and not out.exists()

    done = subprocess.run(_cli(*common, "--out", out, "--checkpoint-dir", ckpt, "--resume"), env=_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {ckpt} at step {killed_at}" in done.stdout
    a, b = load_file(str(ref)), load_file(str(out))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    card_a, card_b = (json.loads(p.with_suffix(".json").read_text()) for p in (ref, out))
    assert card_a["threshold"] == card_b["threshold"]
    assert card_a["metrics"]["validation"] == card_b["metrics"]["validation"]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process_same_global_batch(stack_file, tmp_path):
    common = ["--stack", stack_file, *TINY, "--steps", "4", "--checkpoint-every", "100"]
    ddp, single = tmp_path / "ddp.safetensors", tmp_path / "single.safetensors"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", str(ROOT / "train_cli.py"), "train", *map(str, common),
                          "--out", str(ddp)], env=_env(1), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0 of 2 (gloo)" in run.stdout
    # one process, the same global batch of 4 in micro-batches of the per-rank share (2)
    subprocess.run(_cli(*common, "--micro-batch", "2", "--out", single), check=True, env=_env(1), cwd=ROOT,
                   capture_output=True, timeout=600)
    (pa, _), (pb, _) = _params(ddp), _params(single)
    assert pa.keys() == pb.keys() and len(pa) > 50
    worst = max((pa[k] - pb[k]).abs().max().item() for k in pa)
    assert worst <= 1e-6, worst


def test_train_writes_model_card_and_validation_figure(tmp_path):
    stack = synthetic_stack(128, 128, n_species=3, n_aux=2, seed=4)
    cfg = TrainConfig(steps=4, tiles=30, tile_size=32, batch_size=2, holdout=HoldoutSplit(block_size=32, seed=1),
                      val_every=2, val_tiles=4, checkpoint_every=2,
                      model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    out = tmp_path / "m.safetensors"
    result = train(stack, cfg, out, device="cpu", log=lambda s: None)
    model, card = load_model(out)
    assert card.species == stack.species and card.aux_names == stack.aux_names
    assert card.grid["resolution"] == pytest.approx(stack.grid.resolution) and "5070" in card.grid["crs"]
    assert card.tile_size == 32 and card.training["steps"] == 4 and card.masking["region_fraction"] == 0.8
    assert set(card.metrics["validation"]["scenarios"]) == {"region", "species", "both"}
    assert 0.0 < card.threshold < 1.0 and card.threshold == result["validation"]["threshold"]
    assert card.data["holdout"]["test_blocks"] and "git_commit" in json.loads(out.with_suffix(".json").read_text())
    assert (tmp_path / "m.ckpt" / "validation.png").stat().st_size > 1000
    assert read_checkpoint_meta(tmp_path / "m.ckpt")["history"]["val"][0]["step"] == 2
    assert model(torch.zeros(1, 2 * 3 + 2, 32, 32)).shape == (1, 3, 32, 32)


def test_resume_refuses_other_settings(tmp_path):
    stack = synthetic_stack(128, 128, n_species=3, n_aux=1, seed=4)
    cfg = TrainConfig(steps=2, tiles=10, tile_size=32, batch_size=2, holdout=HoldoutSplit(block_size=32),
                      val_every=0, model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    t = Trainer(stack, cfg, torch.device("cpu"))
    t.train_step()
    t.save(tmp_path)
    other = Trainer(stack, cfg.with_overrides({"lr": 0.5}), torch.device("cpu"))
    with pytest.raises(InputError, match="lr"):
        other.resume(tmp_path)
    again = Trainer(stack, cfg.with_overrides({"checkpoint_every": 7}), torch.device("cpu"))
    assert again.resume(tmp_path) and again.step == 1


def test_presets_and_overrides():
    paper = TrainConfig().with_overrides(PRESETS["paper"])
    assert (paper.tiles, paper.encoder_depth, paper.tile_size, paper.steps, paper.mask.region_fraction) == \
        (10000, 152, 64, 30000, 0.8)
    cfg = TrainConfig().with_overrides({"mask.species_k": [2, 4], "holdout.seed": 9, "loss.recall": 0.0})
    assert cfg.mask.species_k == (2, 4) and cfg.holdout.seed == 9 and cfg.loss.recall == 0.0
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError, match="Unknown training option"):
        cfg.with_overrides({"mask.nonsense": 1})
    warm = [lr_at(cfg, s) for s in range(cfg.steps)]
    assert warm[0] < warm[cfg.warmup_steps - 1] == pytest.approx(cfg.lr) and warm[-1] < 0.1 * cfg.lr


def test_cli_builds_config_from_preset_and_flags():
    from core.cli import parser
    from core.commands.train import config_from_args

    args = parser().parse_args(["train", "--out", "m.safetensors", "--preset", "paper", "--steps", "12",
                                "--mask-fraction", "0.5", "--mask-species-k", "1", "2", "--no-require-record",
                                "--split-seed", "4", "--loss-dice", "0.3",
                                "--model-option", "decoder_attention_type=\"scse\""])
    cfg = config_from_args(args)
    assert (cfg.encoder_depth, cfg.steps, cfg.mask.region_fraction, cfg.mask.species_k) == (152, 12, 0.5, (1, 2))
    assert not cfg.require_record and cfg.holdout.seed == 4 and cfg.loss.dice == 0.3
    assert cfg.model_options == {"decoder_attention_type": "scse"}


def test_aux_dropout_blanks_whole_bands_and_leaves_the_rest_of_the_batch_alone():
    stack = synthetic_stack(128, 128, n_species=3, n_aux=4, seed=4)
    cfg = TrainConfig(steps=2, tiles=20, tile_size=32, batch_size=16, holdout=HoldoutSplit(block_size=32),
                      val_every=0, model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    plain = Trainer(stack, cfg, torch.device("cpu")).batch(0)
    tiles, hidden = Trainer(stack, cfg.with_overrides({"aux_dropout": 0.5}), torch.device("cpu")).batch(0)
    assert torch.equal(hidden, plain[1]) and torch.equal(tiles.presence, plain[0].presence)
    blanked = tiles.aux.abs().amax(dim=(2, 3)) == 0                       # (tile, band) pairs that were dropped
    assert 0 < blanked.sum() < blanked.numel()                              # 64 pairs at p=0.5: some of each
    assert torch.equal(tiles.aux[~blanked], plain[0].aux[~blanked])        # kept bands are untouched
    with pytest.raises(InputError, match="aux_dropout"):
        Trainer(stack, cfg.with_overrides({"aux_dropout": 1.0}), torch.device("cpu"))


def test_unrecorded_training_draws_leave_some_record_cells_visible_and_train():
    from core.commands.train import config_from_args
    from core.cli import parser

    stack = synthetic_stack(128, 128, n_species=3, n_aux=2, seed=4)
    args = parser().parse_args(["train", "--out", "m.safetensors", "--mask-scenarios", "unrecorded=1",
                                "--record-share", "0.5", "0.5"])
    assert config_from_args(args).mask.record_share == (0.5, 0.5)
    cfg = TrainConfig(steps=2, tiles=20, tile_size=32, batch_size=8, holdout=HoldoutSplit(block_size=32),
                      val_every=0, model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    cfg = cfg.with_overrides({"mask.scenarios": {"unrecorded": 1.0}, "mask.record_share": [0.5, 0.5]})
    region_only = Trainer(stack, cfg.with_overrides({"mask.scenarios": {"region": 1.0}}), torch.device("cpu"))
    trainer = Trainer(stack, cfg, torch.device("cpu"))
    tiles, hidden = trainer.batch(0)
    _, region = region_only.batch(0)  # the same regions: unrecorded draws them as the region scenario
    recorded = tiles.presence.bool().any(1, keepdim=True).expand_as(hidden)
    uncovered = region & ~hidden
    assert not (hidden & ~region).any() and not (uncovered & ~recorded).any()
    share = uncovered.sum() / (region & recorded).sum()
    assert 0.35 < float(share) < 0.65
    assert torch.isfinite(torch.tensor(trainer.train_step()))


def test_target_radius_trains_on_presence_within_the_radius():
    from core.commands.train import config_from_args
    from core.cli import parser
    from core.training.loss import presence_within

    args = parser().parse_args(["train", "--out", "m.safetensors", "--target-radius", "2"])
    assert config_from_args(args).target_radius == 2
    presence = torch.zeros(1, 2, 9, 9)
    presence[0, 0, 4, 4] = 1
    within = presence_within(presence, 2)
    assert within[0, 0, 2:7, 2:7].all() and within[0, 0].sum() == 25 and not within[0, 1].any()
    assert torch.equal(presence_within(presence, 0), presence)

    stack = synthetic_stack(96, 96, n_species=3, n_aux=2, seed=5)
    cfg = TrainConfig(steps=1, tiles=8, tile_size=32, batch_size=4, holdout=HoldoutSplit(block_size=32),
                      val_every=0, model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    plain = Trainer(stack, cfg, torch.device("cpu"))
    wide = Trainer(stack, cfg.with_overrides({"target_radius": 3}), torch.device("cpu"))
    loss_plain, loss_wide = plain.train_step(), wide.train_step()   # the same batch and weights
    assert math.isfinite(loss_wide) and loss_wide != loss_plain
    with pytest.raises(InputError, match="target_radius"):
        Trainer(stack, cfg.with_overrides({"target_radius": -1}), torch.device("cpu"))
