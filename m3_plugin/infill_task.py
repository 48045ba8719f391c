"""The background task of one infill run. ``run()`` (a worker thread) touches no QGIS layer: it
gets plain inputs exported on the main thread and writes files into the run's folder;
``finished()`` (main thread) hands the outputs to the dock, which adds the layers. On error or
cancel the run's folder is deleted, so nothing half-made is left."""
from __future__ import annotations

import shutil
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from qgis.core import Qgis, QgsMessageLog, QgsTask

from .core.errors import Cancelled, M3Error
from .core.progress import CallbackProgress
from .infill_job import InfillJob
from .results import RunOutputs

LOG_TAG = "M3"
PREDICTION_FILE = "prediction.tif"
REGION_FILE = "region.gpkg"
CLUSTERS_FILE = "clusters.gpkg"
AUX_ONLY_FILE = "aux_only.tif"
SITES_FILE = "known_sites.gpkg"
STEPS_PERCENT = {"inputs": 5.0, "infill": 90.0}  # share of the progress bar; the rest is clusters


class InfillTask(QgsTask):
    """Runs :func:`core.inference.infer.infill` on the stack assembled from the job's layers."""

    def __init__(self, job: InfillJob, on_done: Callable[["InfillTask"], None]) -> None:
        super().__init__(f"M3 infill: {job.name}", QgsTask.Flag.CanCancel)
        self.job = job
        self.on_done = on_done
        self.outputs: Optional[RunOutputs] = None
        self.error: Optional[str] = None
        self.details = ""  # traceback of an unexpected failure
        self.was_cancelled = False
        self._created = False

    # worker thread ---------------------------------------------------------------------------
    def _scaled(self, lo: float, hi: float) -> CallbackProgress:
        return CallbackProgress(lambda p: self.setProgress(lo + (hi - lo) * p / 100.0), self.isCanceled)

    def run(self) -> bool:
        try:
            self.outputs = self._infill()
            return True
        except Cancelled:
            self.was_cancelled = True
        except M3Error as e:
            self.error = str(e)
        except Exception:  # noqa: BLE001 (an exception must not escape into QGIS's task thread)
            self.error = "The infill failed unexpectedly; details are in the log (View > Panels > Log Messages)."
            self.details = traceback.format_exc()
            QgsMessageLog.logMessage(self.details, LOG_TAG, Qgis.MessageLevel.Critical)
        if self.isCanceled():
            self.was_cancelled = True
        self.discard()
        # a cancel is no failure: QGIS would show its red "Task failed" for False
        return self.was_cancelled and self.error is None

    def _infill(self) -> RunOutputs:
        from .core.inference.flagging import flagged_share
        from .core.inference.site_comparison import compare_with_sites
        from .core.masks.hiding import HideSpec
        from .core.inference.infer import infill
        from .core.inference.layer_inputs import as_region, assemble_stack, catalog_for, records_from_points, write_shapes
        from .core.progress import check_cancelled
        from .core.data.rasterize import record_cells
        from .core.evaluation.run_summary import write_sites

        job = self.job
        progress = self._scaled(0, STEPS_PERCENT["inputs"])
        region = as_region(job.region)
        grid = job.grid
        stack = assemble_stack(job.inputs, grid)
        check_cancelled(progress)
        try:
            job.folder.mkdir(parents=True, exist_ok=False)
        except OSError as e:
            raise M3Error(f"Cannot create the run folder {job.folder} ({e}). Choose another output folder.") from None
        self._created = True
        hide = HideSpec(species=list(job.hide_species), region=region)
        result = infill(stack, job.model_paths, hide, draws=job.draws, batch_size=job.batch_size,
                        device=job.device, progress=self._scaled(STEPS_PERCENT["inputs"], STEPS_PERCENT["infill"]),
                        out=job.folder / PREDICTION_FILE)
        check_cancelled(progress)
        mean, std = result.read()
        means = dict(zip(result.species, mean))
        write_shapes(job.region, job.folder / REGION_FILE)
        region_cells = hide.cells(grid, stack.valid)
        # the threshold shown is the threshold used: the rule's (by default the top share of the region)
        threshold = job.threshold = job.flag_rule.threshold_for(mean, region_cells)
        flagged = flagged_share(mean, region_cells, threshold)
        outputs = RunOutputs(job.name, job.folder, job.folder / PREDICTION_FILE, list(result.species),
                             threshold, job.folder / REGION_FILE, sites_layer_id=job.sites_layer_id,
                             flag_text=job.flag_rule.describe(threshold, flagged),
                             validated_threshold=job.validated_threshold, scale_note=job.scale_note)
        outputs.std_max = {s: float(np.nanmax(a)) if np.isfinite(a).any() else 0.0
                           for s, a in zip(result.species, std)}
        outputs.mean_max = {s: float(np.nanmax(a)) if np.isfinite(a).any() else 1.0
                            for s, a in zip(result.species, mean)}
        outputs.calibrated = job.calibrated
        sites = records_from_points(job.sites, catalog_for(stack.species)) if job.sites is not None else None
        if sites is not None:
            outputs.comparison = compare_with_sites(means, grid, region_cells, stack.valid, job.threshold, sites)
            outputs.scores = self._scores(stack, hide, region_cells, means, sites)
            inside = record_cells(sites, grid)[2]  # the run's cells: the region and the context around it
            outputs.known_sites_count = write_sites(sites.subset(inside), list(result.species),
                                                    job.folder / SITES_FILE)
            outputs.known_sites = job.folder / SITES_FILE
        outputs.settings = {**(job.settings or {}), "device": result.device, "flagged": outputs.flag_text,
                            "probability scale": job.scale_note,
                            "validated threshold for this question": f"{job.validated_threshold:.3g}"}
        outputs.label_field = job.label_field
        summary = (f"{result.evaluations} evaluations ({len(result.models)} model(s) × {result.draws} "
                   f"draws) on {result.device}, {result.seconds:.1f} s; {result.hide}.")
        if job.aux_only_map:
            check_cancelled(progress)
            summary += " " + self._aux_only(stack, job, region, region_cells, outputs, progress)
        if job.find_clusters:
            check_cancelled(progress)
            outputs.clusters, outputs.cluster_count = self._clusters(stack, job)
        outputs.summary = summary
        self.setProgress(100.0)
        return outputs

    @staticmethod
    def _scores(stack, hide, region_cells, means, sites):
        """The hidden species over the region's cells: the model's scores, the known sites and the
        blurred-record baseline on what the model saw (the hidden species' records in the region off)."""
        from .core.evaluation.run_summary import blurred_baseline, species_scores

        visible = stack.presence > 0.5
        for i in np.flatnonzero(hide.species_flags(stack.species)):
            visible[i] &= ~region_cells
        baseline = blurred_baseline(visible, stack.valid)
        return species_scores(means, stack.grid, region_cells, sites, baseline)

    @staticmethod
    def _aux_only(stack, job: InfillJob, region, region_cells, outputs: RunOutputs, progress) -> str:
        """The aux-only map of the hidden species on the region's cells (:func:`core.inference.aux_map.aux_map_around`:
        fitted around the region, never on it) into the run folder; returns a sentence for the summary.
        Cancellable during the fits (``progress``)."""
        from .core.errors import InputError
        from .core.evaluation.run_summary import percent, top_share_capture
        from .core.inference.aux_map import AuxMap, aux_map_around, sklearn_missing, write_aux_map

        if sklearn_missing():
            return "No aux-only map: it needs scikit-learn, which QGIS's Python cannot import."
        if not stack.aux_bands:
            return "No aux-only map: the run has no aux layer."
        species = list(job.hide_species or stack.species)
        try:
            mean = aux_map_around(job.inputs, region, job.grid, region_cells, species, progress=progress)
        except InputError as e:
            return f"No aux-only map: {e}"
        # one seed: its spread is 0 where it maps (as `aux-map --seeds 1` writes), not a band of NaN only
        aux = AuxMap(species, mean, np.where(np.isfinite(mean), 0.0, np.nan).astype(mean.dtype),
                     "aux-only gradient boosting, fitted around the hidden region (never on it)", 1)
        write_aux_map(aux, stack, job.folder / AUX_ONLY_FILE)
        outputs.aux_only = job.folder / AUX_ONLY_FILE
        outputs.aux_only_range = {s: (float(np.nanpercentile(m[region_cells], 50)),
                                      float(np.nanpercentile(m[region_cells], 99)))
                                  for s, m in zip(species, mean) if np.isfinite(m[region_cells]).any()}
        said = []
        for sc in outputs.scores:
            if sc.species not in species:
                continue
            a = sc.aux_only = mean[species.index(sc.species)][region_cells]  # the curve's dotted line
            if sc.sites.sum() <= 0:
                continue
            said.append(f"{sc.species}: M3 {percent(top_share_capture(sc.scores, sc.sites))}, aux-only map "
                        f"{percent(top_share_capture(a, sc.sites))}, blurred records "
                        f"{percent(top_share_capture(sc.baseline, sc.sites))}")
        return ("Aux-only map added (hidden layers). Known sites in the top 10 % of the region — "
                + "; ".join(said) + "." if said else "Aux-only map added (hidden layers).")

    @staticmethod
    def _clusters(stack, job: InfillJob) -> tuple[Path, int]:
        """Discovered clusters (core.inference.clusters) as a GeoPackage: high probability, no known site of the
        species nearby; known sites by core's one rule (the known-sites layer, else the stack's presence cells)."""
        from .core.inference.clusters import find_clusters, known_sites, write_clusters
        from .core.data.stack_sources import open_stack_source

        known = known_sites(job.grid, stack.species, points=job.sites, stack=open_stack_source(stack))[0]
        found = find_clusters(job.folder / PREDICTION_FILE, known, job.threshold, job.cluster_min_area_km2,
                              job.cluster_min_distance_km)
        path = write_clusters(found, job.folder / CLUSTERS_FILE, job.grid.crs,
                              {"threshold": job.threshold, "min_area_km2": job.cluster_min_area_km2,
                               "min_distance_km": job.cluster_min_distance_km})
        return path, len(found)

    def discard(self) -> None:
        """Delete the run's folder and everything in it (a folder only this task created): after a
        failure or a cancel, or when its outputs cannot be added to the project."""
        if self._created and self.job.folder.exists():
            shutil.rmtree(self.job.folder, ignore_errors=True)

    # main thread ------------------------------------------------------------------------------
    def cancel(self) -> None:
        self.was_cancelled = True
        super().cancel()

    def finished(self, ok: bool) -> None:  # noqa: D401 (QgsTask API)
        if not ok and self.error is None:
            self.was_cancelled = True
        try:
            self.on_done(self)
        except RuntimeError:  # the dock was closed (its widgets deleted) while the task ran
            self.discard()
