"""The loss counts hidden valid cells only, and splits over processes/micro-batches exactly."""
import torch

from core.training.loss import LossWeights, combine, loss_counts, loss_sums, masked_loss


def _batch(seed=0, b=4, s=3, k=16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, s, k, k, generator=g)
    target = (torch.rand(b, s, k, k, generator=g) < 0.1).float()
    hidden = torch.rand(b, s, k, k, generator=g) < 0.5
    valid = torch.rand(b, k, k, generator=g) < 0.8
    return logits, target, hidden, valid


def test_visible_and_invalid_cells_do_not_count():
    logits, target, hidden, valid = _batch()
    base = masked_loss(logits, target, hidden, valid)
    outside = ~(hidden & valid.unsqueeze(1))
    logits2 = torch.where(outside, torch.randn_like(logits) * 10, logits)
    target2 = torch.where(outside, 1 - target, target)
    assert torch.allclose(masked_loss(logits2, target2, hidden, valid), base)
    inside = ~outside
    logits3 = torch.where(inside, logits + 1.0, logits)
    assert not torch.allclose(masked_loss(logits3, target, hidden, valid), base)


def test_gradient_is_zero_outside_hidden_valid_cells():
    logits, target, hidden, valid = _batch(1)
    logits.requires_grad_(True)
    masked_loss(logits, target, hidden, valid).backward()
    outside = ~(hidden & valid.unsqueeze(1))
    assert torch.all(logits.grad[outside] == 0)
    assert logits.grad[~outside].abs().sum() > 0


def test_bce_only_is_mean_over_hidden_valid_cells():
    logits, target, hidden, valid = _batch(2)
    w = LossWeights(bce=1.0, dice=0.0, recall=0.0)
    m = hidden & valid.unsqueeze(1)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[m], target[m])
    assert torch.allclose(masked_loss(logits, target, hidden, valid, w), expected, atol=1e-6)


def test_better_prediction_lower_loss_for_every_term():
    _, target, hidden, valid = _batch(3)
    good = (target * 2 - 1) * 4
    for w in (LossWeights(1, 0, 0), LossWeights(0, 1, 0), LossWeights(0, 0, 1)):
        assert masked_loss(good, target, hidden, valid, w) < masked_loss(-good, target, hidden, valid, w)


def test_batch_split_with_global_counts_equals_whole_batch():
    logits, target, hidden, valid = _batch(4, b=6)
    w = LossWeights(1.0, 1.0, 0.5)
    whole = masked_loss(logits, target, hidden, valid, w)
    counts = loss_counts(target, hidden, valid)
    parts = [loss_sums(logits[i:i + 2], target[i:i + 2], hidden[i:i + 2], valid[i:i + 2], w) for i in (0, 2, 4)]
    split = sum(combine(p, counts, w) for p in parts)
    assert torch.allclose(split, whole, atol=1e-6)


def test_no_hidden_cells_gives_zero_not_nan():
    logits, target, hidden, valid = _batch(5)
    loss = masked_loss(logits, target, torch.zeros_like(hidden), valid)
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_dice_and_recall_use_only_pairs_with_hidden_records():
    logits, target, hidden, valid = _batch(6, b=2, s=2)
    target[0, 1] = 0  # tile 0, species 1: no record anywhere
    logits.requires_grad_(True)
    masked_loss(logits, target, hidden, valid, LossWeights(bce=0.0, dice=1.0, recall=1.0)).backward()
    assert torch.all(logits.grad[0, 1] == 0)
    assert logits.grad[1, 1].abs().sum() > 0
