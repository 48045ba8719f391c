"""Masks: seeded and reproducible, right fractions, the three scenarios as specified."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from core.errors import InputError
from core.masks.masking import SCENARIOS, MaskSpec, blob_masks, draw_masks, generator_for, rect_masks


def test_same_seed_same_masks_other_seed_other_masks():
    spec = MaskSpec()
    a, sa = draw_masks(spec, 16, 10, 64, 64, generator_for(3, 7))
    b, sb = draw_masks(spec, 16, 10, 64, 64, generator_for(3, 7))
    c, _ = draw_masks(spec, 16, 10, 64, 64, generator_for(3, 8))
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_blob_fraction_is_exact(fraction):
    m = blob_masks(32, 64, 64, fraction, 16, generator_for(0, 1))
    assert torch.all(m.sum((1, 2)) == round(fraction * 64 * 64))


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8, 1.0])
def test_rect_fraction_is_close_and_rectangular(fraction):
    m = rect_masks(64, 64, 64, fraction, generator_for(0, 2))
    share = m.float().mean((1, 2))
    assert torch.all((share - fraction).abs() < 0.01)
    for x in m[:8].numpy():
        rows, cols = np.nonzero(x)
        box = x[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()


def test_blobs_are_few_contiguous_regions_not_noise():
    m = blob_masks(50, 64, 64, 0.3, 16, generator_for(0, 3)).numpy()
    components = [ndimage.label(x)[1] for x in m]
    assert np.mean(components) < 8


def test_region_scenario_hides_every_species_in_one_region():
    hidden, sc = draw_masks(MaskSpec({"region": 1.0}, region_fraction=0.5, region_shape="blob"),
                            8, 5, 64, 64, generator_for(1, 1))
    assert torch.all(sc == SCENARIOS.index("region"))
    assert torch.all(hidden == hidden[:, :1])  # same cells for every species
    assert torch.all(hidden[:, 0].sum((1, 2)) == 2048)


def test_species_scenario_hides_k_whole_layers():
    hidden, _ = draw_masks(MaskSpec({"species": 1.0}, species_k=(2, 3)), 64, 10, 32, 32, generator_for(1, 2))
    whole = hidden.flatten(2).all(2)
    none = ~hidden.flatten(2).any(2)
    assert torch.all(whole | none)  # a species is hidden everywhere or nowhere
    k = whole.sum(1)
    assert torch.all((k >= 2) & (k <= 3)) and set(k.tolist()) == {2, 3}


def test_both_scenario_is_chosen_species_inside_region():
    spec = MaskSpec({"both": 1.0}, species_k=(1, 1), region_fraction=0.3, region_shape="rect")
    hidden, _ = draw_masks(spec, 16, 6, 64, 64, generator_for(2, 2))
    per_species = hidden.flatten(2).sum(2)
    assert torch.all((per_species > 0).sum(1) == 1)
    share = per_species.max(1).values / (64 * 64)
    assert torch.all((share - 0.3).abs() < 0.01)


def test_forced_species_override_keeps_generator_in_step():
    spec = MaskSpec({"species": 1.0}, species_k=(1, 1))
    forced = torch.zeros(4, 5, dtype=torch.bool)
    forced[:, 2] = True
    g1, g2 = generator_for(5, 5), generator_for(5, 5)
    h, _ = draw_masks(spec, 4, 5, 32, 32, g1, species=forced)
    draw_masks(spec, 4, 5, 32, 32, g2)
    assert torch.all(h[:, 2]) and not h[:, [0, 1, 3, 4]].any()
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_scenario_mixture_follows_weights():
    _, sc = draw_masks(MaskSpec({"region": 3.0, "species": 1.0}), 4000, 4, 32, 32, generator_for(0, 0))
    share = (sc == SCENARIOS.index("region")).float().mean().item()
    assert 0.72 < share < 0.78 and not (sc == SCENARIOS.index("both")).any()


def test_spec_round_trip_and_clear_errors():
    spec = MaskSpec({"region": 1.0, "both": 2.0}, (1, 2), 0.6, "rect", 8)
    assert MaskSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(InputError, match="species"):
        MaskSpec(species_k=(1, 12)).validate(10)
    with pytest.raises(InputError, match="fraction"):
        MaskSpec(region_fraction=1.5)
    with pytest.raises(InputError, match="scenarios"):
        MaskSpec({"everything": 1.0})


def test_a_users_hiding_maps_to_the_scenario_whose_threshold_applies():
    from core.masks.hiding import hiding_scenario

    everything = ["Au", "Ag", "Cu"]
    assert hiding_scenario(["Cu"], False, everything) == "species"
    assert hiding_scenario([], True, everything) == "region"
    assert hiding_scenario(everything, True, everything) == "region"
    assert hiding_scenario(["Cu"], True, everything) == "both"
    assert hiding_scenario([], False, everything) is None


def test_unrecorded_scenario_hides_the_region_but_a_share_of_its_record_cells():
    from core.masks.masking import DRAW_SCENARIOS, UNRECORDED, reveal_draws, reveal_records

    spec = MaskSpec({"region": 1.0, UNRECORDED: 1.0}, record_share=(0.3, 0.3))
    g = generator_for(0, 5)
    hidden, scenario = draw_masks(spec, 64, 3, 32, 32, g)
    presence = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) < 0.1
    after = reveal_records(hidden, presence, reveal_draws(spec, scenario, 32, 32, g))
    unrec = scenario == DRAW_SCENARIOS.index(UNRECORDED)
    assert 0 < int(unrec.sum()) < 64
    assert torch.equal(after[~unrec], hidden[~unrec])          # other draws untouched
    assert not (after & ~hidden).any()                          # nothing newly hidden
    recorded = presence.any(1, keepdim=True).expand_as(hidden)
    uncovered = hidden & ~after
    assert not (uncovered & ~recorded).any()                    # only record cells uncovered...
    assert torch.equal(uncovered.all(1), uncovered.any(1))      # ... every species of them
    share = uncovered[unrec].float().sum() / (hidden & recorded)[unrec].float().sum()
    assert abs(float(share) - 0.3) < 0.05
    assert torch.equal(hidden[unrec].all(1), hidden[unrec].any(1))  # before: the whole region, all species


def test_mixtures_without_unrecorded_draw_as_before():
    # the fourth scenario's weight only enters the draw when named, so older cards' streams are kept
    a, sa = draw_masks(MaskSpec(), 16, 5, 32, 32, generator_for(2, 9))
    b, sb = draw_masks(MaskSpec.from_dict(MaskSpec().to_dict()), 16, 5, 32, 32, generator_for(2, 9))
    assert torch.equal(a, b) and torch.equal(sa, sb) and int(sa.max()) < len(SCENARIOS)
    with pytest.raises(InputError, match="Record share"):
        MaskSpec(record_share=(0.5, 0.2))


def test_hiding_by_source_keeps_the_other_sources_record_cells_visible():
    from core.masks.masking import source_reveal

    sources = torch.zeros(2, 4, 4, dtype=torch.int64)
    sources[0, 0, :3] = 0b01          # source 0: three cells
    sources[0, 1, 0] = 0b10           # source 1: one cell
    sources[0, 2, 0] = 0b11           # a cell both recorded
    # pick 0.1 falls on source 0 (4 of its 6 record-cell slots come first): only cells source 1 recorded stay
    keep = source_reveal(sources, torch.tensor([0.1, 0.5]), torch.tensor([True, True]))
    assert keep.shape == (2, 1, 4, 4)
    expect = torch.zeros(4, 4, dtype=torch.bool)
    expect[1, 0] = expect[2, 0] = True
    assert torch.equal(keep[0, 0], expect)
    assert not keep[1].any()          # a tile without records keeps nothing
    keep = source_reveal(sources, torch.tensor([0.9, 0.5]), torch.tensor([True, True]))   # source 1 hidden
    expect = torch.zeros(4, 4, dtype=torch.bool)
    expect[0, :3] = expect[2, 0] = True
    assert torch.equal(keep[0, 0], expect)
    assert not source_reveal(sources, torch.tensor([0.1, 0.5]), torch.tensor([False, True])).any()
