"""core.evaluation.run_summary: the plugin's table at any threshold, the capture curve and the export files."""
from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.run_summary import (SpeciesScores, percent, write_curve_csv, write_report_html, write_table_csv)


def scores() -> SpeciesScores:
    s = np.array([0.9, 0.8, 0.5, 0.2, 0.1, 0.0])
    sites = np.array([2, 0, 1, 0, 1, 0])
    base = np.array([0.0, 0.1, 0.2, 0.3, 0.9, 0.8])
    return SpeciesScores("Au", s, sites, base, 2.5)


def test_row_at_a_threshold_counts_sites_area_baseline_and_lift():
    row = scores().at_threshold(0.5)
    assert (row.sites_in_region, row.sites_flagged, row.flagged_cells, row.region_cells) == (4, 3, 3, 6)
    assert row.captured == pytest.approx(0.75) and row.flagged_share == pytest.approx(0.5)
    assert row.flagged_area_km2 == pytest.approx(7.5) and row.lift == pytest.approx(1.5)
    # the baseline ranks 0.9, 0.8, 0.3 first: cells holding 1 + 0 + 0 sites of 4
    assert row.baseline_captured == pytest.approx(0.25)
    assert row.cells() == ["Au", "4", "3", "75 %", "8", "50 %", "25 %", "× 1.5"]


def test_small_shares_are_not_rounded_to_zero():
    assert percent(0.0046) == "0.46 %" and percent(0.042) == "4.2 %" and percent(0.26) == "26 %"
    assert percent(0.0) == "0 %" and percent(None) == "—"


def test_curve_runs_from_nothing_to_every_site_and_ties_earn_nothing():
    share, model, base = scores().curve(7)
    assert model[0] == 0 and model[-1] == pytest.approx(1) and base[-1] == pytest.approx(1)
    assert np.all(np.diff(model) >= 0)
    flat = SpeciesScores("Cu", np.zeros(4), np.array([1, 0, 0, 0]), np.zeros(4), 1.0)
    assert flat.curve(5)[1][3] == 0  # three quarters of a flat map: the site cell ranked last


def test_export_files(tmp_path):
    s = scores()
    rows = [s.at_threshold(0.5)]
    assert write_table_csv(tmp_path / "t.csv", rows).read_text().startswith("species,known_sites_in_region")
    lines = write_curve_csv(tmp_path / "c.csv", [s], points=11).read_text().splitlines()
    assert lines[0] == "share_of_area,Au_model,Au_baseline" and len(lines) == 12
    s.aux_only = s.baseline[::-1].copy()   # a run with the aux-only map: its column beside the species'
    with_aux = write_curve_csv(tmp_path / "c2.csv", [s], points=11).read_text().splitlines()
    assert with_aux[0] == "share_of_area,Au_model,Au_baseline,Au_aux_only"
    assert [row.split(",")[1:3] for row in with_aux[1:]] == [row.split(",")[1:] for row in lines[1:]]
    assert with_aux[-1].endswith(",1.0000") and s.aux_only_curve(11)[0] == 0
    page = write_report_html(tmp_path / "r.html", "Run <1>", {"threshold": 0.5}, rows, "curve.png").read_text()
    assert "Run &lt;1&gt;" in page and "curve.png" in page and "75 %" in page
