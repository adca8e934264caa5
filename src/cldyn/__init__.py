"""cldyn: CLDyN closed-loop dynamic network for multi-task-aware infrared-visible image fusion."""

__version__ = "0.1.0"
