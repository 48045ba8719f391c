"""An experiment of the discovery test: weighted log-odds combinations of M3's infill map, the aux-only
map (`aux-map`) and blurred visible records, scored by the discovery test's own functions
(core.evaluation.discovery) on the validation surveys of a discovery stack.

Run from the repository root:
  .venv/bin/python docs/results/discovery/combinations_and_model_changes/weighted_combination.py STACK SOURCE,SOURCE \
      M3_SEED0.tif,M3_SEED1.tif AUXMAP.tif OUT.json
Prints one line per (σ, weights): per source, AUC over 10-mile blocks (mean, std over the M3 seeds)
and top-10 % capture."""
import itertools, json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root
from core.data.stack import Stack
from core.evaluation import discovery as D
from core.inference.combine import logit, EPS
from core.inference.layer_inputs import catalog_for
from core.data.records import read_records
from core.data import defaults

stack_path, sources, m3_groups, auxmap, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), sys.argv[4], sys.argv[5]
stack = Stack.read(stack_path)
recs = read_records(defaults.RECORDS, catalog_for(stack.species))
srcs = D.held_out_sources(stack, recs, sources)
wins = [s.window(stack.grid.shape) for s in srcs]
cut = lambda a, w: a[w[0]:w[0] + w[2], w[1]:w[1] + w[3]]
L = lambda p: logit(np.nan_to_num(p, nan=EPS))
m3 = [L(D.map_on_grid(p, stack)) for p in m3_groups]
am = L(D.map_on_grid(auxmap, stack))
blur = {s: L(D.blurred_records(stack, s)) for s in D.BLUR_SIGMAS}
rows = []
grid = [0, 0.5, 1, 2]
for sigma in D.BLUR_SIGMAS:
    for wm, wa, wb in itertools.product(grid, grid, grid):
        if wm + wa + wb == 0 or (wb == 0 and sigma != D.BLUR_SIGMAS[0]):
            continue
        res = {}
        for i, (s, w) in enumerate(zip(srcs, wins)):
            per = []
            for m in m3:
                z = wm * m + wa * am + wb * blur[sigma]
                r = D.score_map(cut(z, w), s, w)
                per.append((r["auc_10cell"], r["top10"]))
            a = np.array(per)
            res[s.name] = [float(a[:, 0].mean()), float(a[:, 0].std()), float(a[:, 1].mean())]
        rows.append({"sigma": sigma, "w": [wm, wa, wb], "res": res})
        print(sigma, wm, wa, wb, {k: [round(x, 3) for x in v] for k, v in res.items()}, flush=True)
json.dump(rows, open(out, "w"), indent=0)
