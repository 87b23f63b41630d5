"""mimmu: compensation-free concept erasure for text-to-image diffusion models (MiM-MU)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_pipeline"]


def __getattr__(name: str):
    # Imported lazily so that `import mimmu` stays cheap and free of torch start-up.
    if name == "load_pipeline":
        from mimmu.loading import load_pipeline

        return load_pipeline
    raise AttributeError(f"module 'mimmu' has no attribute {name!r}")
