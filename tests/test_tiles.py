"""Tiles and the spatial hold-out: no training tile touches a validation or test block."""
import numpy as np
import pytest
import torch

from core.errors import InputError
from core.data.synthetic import synthetic_stack
from core.masks.tiles import (TEST, TRAIN, VAL, HoldoutSplit, StackTensors, TileBatch, holdout_tiles, train_frequency,
                        training_tiles)


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(256, 256, n_species=4, n_aux=2, seed=1)


@pytest.mark.parametrize("buffer", [0, 5])
def test_training_tiles_never_touch_held_out_blocks(stack, buffer):
    split = HoldoutSplit(block_size=64, val_fraction=0.2, test_fraction=0.2, seed=3, buffer=buffer)
    labels = split.cell_labels(stack.valid)
    assert (labels == VAL).any() and (labels == TEST).any()
    tiles = training_tiles(stack, split, 32, 10_000, seed=0, require_record=False)
    assert len(tiles) > 100
    for r, c in tiles:
        window = labels[max(0, r - buffer):r + 32 + buffer, max(0, c - buffer):c + 32 + buffer]
        assert np.all(window == TRAIN)


def test_split_is_seeded_and_test_blocks_do_not_depend_on_val_fraction(stack):
    a = HoldoutSplit(block_size=64, val_fraction=0.1, test_fraction=0.2, seed=5).block_labels(stack.valid)
    b = HoldoutSplit(block_size=64, val_fraction=0.1, test_fraction=0.2, seed=5).block_labels(stack.valid)
    c = HoldoutSplit(block_size=64, val_fraction=0.3, test_fraction=0.2, seed=5).block_labels(stack.valid)
    d = HoldoutSplit(block_size=64, val_fraction=0.1, test_fraction=0.2, seed=6).block_labels(stack.valid)
    assert np.array_equal(a, b)
    assert np.array_equal(a == TEST, c == TEST)
    assert not np.array_equal(a, d)


def test_tiles_have_land_and_records(stack):
    split = HoldoutSplit(block_size=64, seed=0)
    tiles = training_tiles(stack, split, 32, 300, seed=1, min_valid=0.6, require_record=True)
    assert len(tiles) == 300 and len({tuple(t) for t in tiles}) == 300
    for r, c in tiles:
        v = stack.valid[r:r + 32, c:c + 32]
        assert v.mean() >= 0.6
        assert (stack.presence[:, r:r + 32, c:c + 32] & v).any()
    again = training_tiles(stack, split, 32, 300, seed=1, min_valid=0.6, require_record=True)
    assert np.array_equal(tiles, again)


def test_holdout_tiles_lie_inside_their_part(stack):
    split = HoldoutSplit(block_size=64, val_fraction=0.2, test_fraction=0.2, seed=2)
    labels = split.cell_labels(stack.valid)
    for part, code in (("val", VAL), ("test", TEST)):
        tiles = holdout_tiles(stack, split, 32, part)
        assert len(tiles) > 0
        for r, c in tiles:
            assert np.all(labels[r:r + 32, c:c + 32] == code)


def test_gather_matches_slicing_and_codes_are_the_square_symmetries(stack):
    t = StackTensors(stack, torch.device("cpu"))
    origins = torch.tensor([[0, 0], [100, 37], [224, 224]])
    batch = t.gather(origins, 32)
    assert isinstance(batch, TileBatch) and batch.presence.shape == (3, 4, 32, 32)
    for i, (r, c) in enumerate(origins.tolist()):
        assert np.array_equal(batch.presence[i].numpy(), stack.presence[:, r:r + 32, c:c + 32])
        assert np.array_equal(batch.aux[i].numpy(), stack.aux[:, r:r + 32, c:c + 32])
        assert np.array_equal(batch.valid[i].numpy(), stack.valid[r:r + 32, c:c + 32])

    def expected(x, code):  # flip rows, flip columns, then transpose
        x = x.flip(-2) if code & 1 else x
        x = x.flip(-1) if code & 2 else x
        return x.transpose(-1, -2) if code & 4 else x

    many = origins[torch.arange(8) % 3]
    codes = torch.arange(8)
    plain = t.gather(many, 32)
    moved = t.gather(many, 32, codes)
    for i in range(8):
        assert torch.equal(moved.presence[i], expected(plain.presence[i], i))
        assert torch.equal(moved.aux[i], expected(plain.aux[i], i))
        assert torch.equal(moved.valid[i], expected(plain.valid[i], i))
    assert len({moved.presence[i].numpy().tobytes() for i in range(8)}) > 1


def test_train_frequency_uses_training_blocks_only(stack):
    split = HoldoutSplit(block_size=64, val_fraction=0.2, test_fraction=0.2, seed=2)
    freq = train_frequency(stack, split)
    cells = (split.cell_labels(stack.valid) == TRAIN) & stack.valid
    assert freq["Au"] == pytest.approx(stack.presence[0][cells].mean())


def test_clear_errors(stack):
    with pytest.raises(InputError, match="multiple of 32"):
        training_tiles(stack, HoldoutSplit(), 40, 10, 0)
    with pytest.raises(InputError, match="No training tile"):
        training_tiles(stack, HoldoutSplit(block_size=64), 64, 10, 0, min_valid=1.01)
    with pytest.raises(InputError, match="fractions"):
        HoldoutSplit(val_fraction=0.6, test_fraction=0.5)
