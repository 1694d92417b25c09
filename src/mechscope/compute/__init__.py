"""Fan-out of independent work (``engine``: in this process or on a Ray cluster); see ``compute/engine.py``."""

from mechscope.compute.engine import RAY_INSTALL, Engine, InProcess, RayEngine, engine

__all__ = ["Engine", "InProcess", "RayEngine", "engine", "RAY_INSTALL"]
