"""``cldyn serve``: a local web page to try task-customised fusion on one pair (optional extra ``cldyn[app]``).

:mod:`cldyn.app.backend` does the work (no web framework: plain functions on bytes and decoded images, tested on
their own); :mod:`cldyn.app.server` is the FastAPI layer around it and the page (``page.html``).
"""
