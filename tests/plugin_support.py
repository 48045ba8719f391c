"""Helpers shared by the plugin tests: wait for background tasks, make a tiny random-weight model that
fits a stack, and load the example data once into a test run's own cache folder."""
from __future__ import annotations

import json
import time
from pathlib import Path

import rasterio
from qgis.PyQt.QtCore import QCoreApplication

TINY_TILE = 32


def wait_until(condition, timeout: float = 300.0) -> None:
    """Process Qt events (task progress, ``finished()`` calls) until ``condition()`` holds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        QCoreApplication.processEvents()
        time.sleep(0.02)


def stack_metadata(path: Path) -> dict:
    """The M3_STACK tag of a stack GeoTIFF (species, aux bands, grid), without reading its bands."""
    with rasterio.open(path) as src:
        return json.loads(src.tags()["M3_STACK"])


def tiny_model(path: Path, meta: dict, tile: int = TINY_TILE, threshold: float = 0.5, pu: bool = False) -> Path:
    """A random-weight U-Net (resnet18, thin decoder) with a card that fits the stack ``meta``;
    ``pu``: the presence instance of a PU model (core.model.pu) with its observation instance."""
    import torch

    from core.model.model_file import ModelCard, save_model
    from core.model.models import ModelConfig, build_model

    torch.manual_seed(0)
    species, aux = meta["species"], meta["aux_bands"]
    cfg = ModelConfig(arch="unet", in_channels=2 * len(species) + len(aux), classes=len(species), encoder_depth=18,
                      options={"decoder_channels": [16, 16, 16, 16, 16], **({"pu": True} if pu else {})})
    model = build_model(cfg)
    grid = meta["grid"]
    card = ModelCard(species=list(species), aux_bands=list(aux),
                     grid={"crs": grid["crs"], "crs_wkt": grid["crs_wkt"], "resolution": grid["resolution"]},
                     tile_size=tile, model=cfg.to_dict(), threshold=threshold,
                     metrics={"validation": {"dice": 0.0, "recall": 0.0}})
    return save_model(path, model, card)


from core.data.defaults import DEFAULT_STACK_NAME as STACK_NAME  # noqa: E402


def clear_project() -> None:
    from qgis.core import QgsProject

    QgsProject.instance().clear()


def example_session(tmp_path_factory, qgis_app):
    """Generator behind the session fixtures: M3_CACHE → a fresh folder; the plugin's "Load
    example data" builds the stack there in its background task (the first, slow load)."""
    import os

    from m3_plugin.example_data import ExampleData

    cache = tmp_path_factory.mktemp("m3_cache")
    old = os.environ.get("M3_CACHE")
    os.environ["M3_CACHE"] = str(cache)
    clear_project()
    messages: list[tuple[str, bool]] = []
    example = ExampleData(lambda text, error: messages.append((text, error)))
    group = example.load()
    built_in_background = example.task is not None
    wait_until(lambda: example.stack_layer_id is not None or any(e for _, e in messages), timeout=600)
    info = {"cache": cache, "stack": cache / STACK_NAME, "messages": messages,
            "built_in_background": built_in_background,
            "layers": [node.name() for node in group.findLayers()]}
    clear_project()
    try:
        yield info
    finally:
        if old is None:
            os.environ.pop("M3_CACHE", None)
        else:
            os.environ["M3_CACHE"] = old
