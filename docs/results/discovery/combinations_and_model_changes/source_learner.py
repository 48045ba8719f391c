"""An experiment of the discovery test: a discovery learner trained on the discovery question itself.

Leave one source out over the discovery stack's *visible* source data sets (those with at least 300
record cells on the grid): remove its records, and fit gradient boosting to rank its record cells
inside its area (the discovery test's definition) from the other records (blurred shares at
several widths, distance to the nearest record) and the aux bands' features (the aux-only rival's).
Then rank the truly held-out sources named on the command line, scored as `discover` scores.

With TILE_DEG=D in the environment, each visible source is first split into pseudo-sources by
D-degree lon/lat tiles (a source's records in one tile), about a state each, so that there are more
tasks like "a state survey held out" to learn from (those with at least MIN_CELLS record cells,
default 300).

Run from the repository root:
  [TILE_DEG=4 MIN_CELLS=100] .venv/bin/python docs/results/discovery/combinations_and_model_changes/source_learner.py \
      STACK OUT_PREFIX SOURCE [SOURCE ...]
"""
import os
import sys, json, time
from pathlib import Path
import numpy as np
from scipy import ndimage
sys.path.insert(0, str(next(p for p in Path(__file__).resolve().parents if (p / "train_cli.py").exists())))  # the repository root
from core.data.stack import Stack
from core.evaluation import discovery as D
from core.inference.aux_boosting import aux_features
from core.inference.combine import logit, EPS
from core.inference.layer_inputs import catalog_for
from core.data.records import read_records
from core.data.rasterize import record_cells
from core.data import defaults
from sklearn.ensemble import HistGradientBoostingClassifier

stack_path, out, scored = sys.argv[1], sys.argv[2], sys.argv[3:]
SIG = (1, 2, 4, 8, 16, 32)
t0 = time.time()
stack = Stack.read(stack_path)
recs = read_records(defaults.RECORDS, catalog_for(stack.species))
held = list(stack.info[D.INFO_KEY])
TILE_DEG, MIN_CELLS = float(os.environ.get("TILE_DEG", 0)), int(os.environ.get("MIN_CELLS", 300))
NEG = 40000 if not TILE_DEG else 15000
if TILE_DEG:  # relabel the visible sources' records by tile; the held-out sources keep their names
    recs.datasets = [d if d in held else f"{d}@{int(lo // TILE_DEG)},{int(la // TILE_DEG)}"
                     for d, lo, la in zip(recs.datasets, recs.lon, recs.lat)]
# visible sources with enough record cells on the grid
names = sorted(set(recs.datasets) - set(held))
pseudo = []
for n in names:
    r, c, inside = record_cells(recs.subset(recs.from_datasets([n])), stack.grid)
    k = int(stack.valid[r[inside], c[inside]].sum()) if inside.any() else 0
    if k >= MIN_CELLS:
        pseudo.append(n)
print("pseudo sources:", pseudo, flush=True)

def record_feats(presence_any):
    f = []
    valid = stack.valid.astype(np.float64)
    p = presence_any.astype(np.float64) * valid
    for s in SIG:
        num = ndimage.gaussian_filter(p, s, mode="constant"); den = ndimage.gaussian_filter(valid, s, mode="constant")
        f.append(np.log10(np.clip(num / np.maximum(den, 1e-6), 1e-7, 1)))
    d = ndimage.distance_transform_edt(~presence_any)
    f.append(np.log1p(d))
    return np.stack(f).astype(np.float32)

rows_l, cols_l, rf_l, y_l, w_l, src_l = [], [], [], [], [], []
rng = np.random.default_rng(0)
for n in pseudo:
    sk = D.discovery_stack(stack, recs, held + [n])
    (h,) = D.held_out_sources(sk, recs, [n])
    pr, pc = np.nonzero(h.positives); er, ec = np.nonzero(h.area & ~h.positives)
    if len(pr) < 30:
        print("skip", n, len(pr)); continue
    pp = rng.choice(len(pr), min(20000, len(pr)), replace=False); ee = rng.choice(len(er), min(NEG, len(er)), replace=False)
    rows = np.concatenate([pr[pp], er[ee]]); cols = np.concatenate([pc[pp], ec[ee]])
    y = np.concatenate([np.ones(len(pp)), np.zeros(len(ee))])
    # each source weighs the same; inside it, positives and negatives at their true shares
    wp, wn = len(pr) / len(pp), len(er) / len(ee)
    w = np.concatenate([np.full(len(pp), wp), np.full(len(ee), wn)]); w = w / w.sum()
    rf = record_feats(sk.presence.any(axis=0))[:, rows, cols].T
    rows_l.append(rows); cols_l.append(cols); rf_l.append(rf); y_l.append(y); w_l.append(w); src_l += [n] * len(y)
    print(n, "positives", len(pr), "area", int(h.area.sum()), f"{time.time()-t0:.0f}s", flush=True)
rows, cols = np.concatenate(rows_l), np.concatenate(cols_l)
RF, Y, W = np.concatenate(rf_l), np.concatenate(y_l), np.concatenate(w_l)
AF = aux_features(stack, rows, cols)
print("features", RF.shape, AF.shape, f"{time.time()-t0:.0f}s", flush=True)

srcs = D.held_out_sources(stack, recs, scored)
wins = [s.window(stack.grid.shape) for s in srcs]
RFT = record_feats(stack.presence.any(axis=0))
results = {}
variants = {"records+aux": True, "records only": False}
for label, use_aux in variants.items():
    for seed in (0, 1, 2):
        clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=31,
                                             l2_regularization=1.0, random_state=seed)
        X = np.hstack([RF, AF]) if use_aux else RF
        clf.fit(X, Y, sample_weight=W * len(W))
        full = np.full(stack.grid.shape, np.nan)
        for s, (r0, c0, hh, ww) in zip(srcs, wins):
            vr, vc = np.nonzero(stack.valid[r0:r0 + hh, c0:c0 + ww])
            x = RFT[:, vr + r0, vc + c0].T
            if use_aux:
                x = np.hstack([x, aux_features(stack, vr + r0, vc + c0)])
            full[vr + r0, vc + c0] = clf.predict_proba(x)[:, 1]
        for s, win in zip(srcs, wins):
            r0, c0, hh, ww = win
            m = D.score_map(full[r0:r0 + hh, c0:c0 + ww], s, win)
            results.setdefault(label, {}).setdefault(s.name, []).append((m["auc_10cell"], m["top10"], m["auc_cell"]))
        print(label, seed, {k: v[-1] for k, v in results[label].items()}, f"{time.time()-t0:.0f}s", flush=True)
for label, per in results.items():
    print(label, {k: [round(float(np.mean(np.array(v)[:, j])), 3) for j in range(3)] + [round(float(np.std(np.array(v)[:, 0])), 3)] for k, v in per.items()})
json.dump({k: {s: v for s, v in per.items()} for k, per in results.items()}, open(out + ".json", "w"))
