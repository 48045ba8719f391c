"""Run from the repository root with .venv/bin/python. How far around a hidden region should the dock's aux-only map be fitted? Top-10 % capture of the
region's known sites, per fit window: the region grown by k × the run grid's larger side, or CONUS."""
import sys, json, numpy as np
from pathlib import Path
sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root
from core.data.stack import Stack
from core.data.build_stack import default_stack_path
from core.inference.aux_map import region_aux_map
from core.evaluation.run_summary import top_share_capture
from core.inference.layer_inputs import as_region, VectorShapes, model_context_grid, window_in, context_grid
from core.data.records import read_records
from core.data.rasterize import record_cells
from core.data import defaults
from core.inference.layer_inputs import catalog_for
full = Stack.read(default_stack_path())
recs = read_records(defaults.RECORDS, catalog_for(full.species))
regions = {"Nevada (Carlin-Battle Mountain)": (-118.0, 39.5, -115.5, 41.5),
           "Colorado mineral belt": (-108.5, 37.3, -105.5, 40.0),
           "Montana (Butte-Helena)": (-113.5, 45.5, -111.0, 47.5)}
for name, (x0, y0, x1, y1) in regions.items():
    shapes = VectorShapes([{"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}], "EPSG:4326", "r")
    region = as_region(shapes)
    grid = model_context_grid(region, full.grid.crs, full.grid.resolution, 64)
    gr0, gc0, gh, gw = window_in(full.grid, grid)
    hidden_run = region.mask(grid) & full.valid[gr0:gr0+gh, gc0:gc0+gw]
    out = {}
    for k in (1, 3, "CONUS"):
        if k == "CONUS":
            r0, c0, h, w = 0, 0, *full.grid.shape
        else:
            wide = context_grid(region, grid.crs, grid.resolution, k * max(grid.height, grid.width))
            r0, c0, h, w = window_in(full.grid, wide)
            r0, c0 = max(r0, 0), max(c0, 0); h = min(h, full.grid.height - r0); w = min(w, full.grid.width - c0)
        st = full.window(r0, c0, h, w)
        cells = np.zeros(st.grid.shape, bool)
        cells[gr0 - r0:gr0 - r0 + gh, gc0 - c0:gc0 - c0 + gw] = hidden_run
        res = {}
        for sym in ("Au", "Cu"):
            m = region_aux_map(st, [sym], cells)[0][cells]
            rr, cc, inside = record_cells(recs.subset(recs.species[:, recs.symbols.index(sym)]), st.grid)
            sites = np.zeros(st.grid.shape); np.add.at(sites, (rr[inside], cc[inside]), 1)
            res[sym] = round(top_share_capture(m, sites[cells]), 3)
        out[str(k)] = res
        print(name, k, res, flush=True)
