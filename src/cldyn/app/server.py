"""The web layer of ``cldyn serve``: FastAPI routes around :mod:`cldyn.app.backend` and the page ``page.html``.

Why FastAPI: a well-kept, MIT-licensed framework that the ML ecosystem already uses for model services, small
(with uvicorn and python-multipart three pure-Python wheels), and with a test client, so the whole app is tested
in-process; the page itself is one HTML file with a little JavaScript, no front-end build and no assets from the
network. Gradio would give the widgets for free but pulls in a large dependency tree and a front end that loads
fonts and scripts from the internet by default.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from cldyn.app.backend import AppConfig, ModelCache, Upload, run_pair
from cldyn.errors import CldynError
from cldyn.inference.customise import DEFAULT_STRENGTH
from cldyn.inference.demo import demo_pairs, pair_title

OptionalFile = Annotated[UploadFile | None, File()]


def page_html() -> str:
    return (resources.files("cldyn") / "app" / "page.html").read_text(encoding="utf-8")


async def _read(upload: UploadFile | None, cfg: AppConfig) -> Upload | None:
    """The file's bytes, reading at most one byte past the limit (so an oversized file is refused, not held)."""
    if upload is None or not upload.filename:
        return None
    return Upload(upload.filename, await upload.read(cfg.max_upload_bytes + 1))


def create_app(cfg: AppConfig | None = None) -> FastAPI:
    """The app: ``GET /`` the page, ``GET /api/demo`` the bundled pairs, ``POST /api/fuse`` one result."""
    cfg = cfg or AppConfig()
    models = ModelCache(cfg)
    app = FastAPI(title="cldyn serve", docs_url=None, redoc_url=None, openapi_url=None)
    # A whole request may hold two images and three weights files.
    request_limit = 5 * cfg.max_upload_bytes + 2**20

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > request_limit:
            return JSONResponse({"error": f"request of {int(size) / 2**20:.0f} MB is over the limit of "
                                          f"{request_limit / 2**20:.0f} MB"}, status_code=413)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page_html()

    @app.get("/api/demo")
    def demo() -> dict[str, Any]:
        return {"pairs": [{"name": p.name, "title": pair_title(p)} for p in demo_pairs()], "tasks": cfg.choices(),
                "strength": DEFAULT_STRENGTH,
                "max_upload_mb": cfg.max_upload_bytes / 2**20}

    @app.post("/api/fuse")
    async def fuse(task: Annotated[str, Form()] = "none", demo: Annotated[str, Form()] = "",
                   strength: Annotated[str, Form()] = str(DEFAULT_STRENGTH), align: Annotated[str, Form()] = "none",
                   ir: OptionalFile = None, vis: OptionalFile = None, vfn_weights: OptionalFile = None,
                   task_weights: OptionalFile = None, rsc_weights: OptionalFile = None):
        try:
            if demo:
                pair = next((p for p in demo_pairs() if p.name == demo), None)
                if pair is None:
                    raise CldynError(f"no demo pair named {demo!r}")
                ir_up = Upload(pair.ir.name, pair.ir.read_bytes())
                vis_up = Upload(pair.vis.name, pair.vis.read_bytes())
            else:
                ir_up, vis_up = await _read(ir, cfg), await _read(vis, cfg)
                if ir_up is None or vis_up is None:
                    raise CldynError("give an infrared and a visible image, or pick a demo pair")
            given = {"vfn": vfn_weights, "task": task_weights, "rsc": rsc_weights}
            weights = {k: u for k, f in given.items() if (u := await _read(f, cfg)) is not None}
            # The compute is synchronous: run it in the thread pool so the server keeps answering meanwhile.
            return await run_in_threadpool(run_pair, ir_up, vis_up, task, models, weights, strength, align)
        except CldynError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return app


def serve(host: str = "127.0.0.1", port: int = 8765, cfg: AppConfig | None = None, announce=print) -> None:
    """Run the app with uvicorn until interrupted, saying first where it listens."""
    where = "local only; --host 0.0.0.0 listens on every interface" if host in ("127.0.0.1", "localhost") else \
        "listening beyond this machine"
    announce(f"cldyn serve: http://{host}:{port}/ ({where}); Ctrl-C stops it")
    uvicorn.run(create_app(cfg), host=host, port=port, log_level="warning")
