"""Metrics: fusion quality (:mod:`cldyn.metrics.fusion`). Task metrics live with their adapters in
:mod:`cldyn.tasks`."""
