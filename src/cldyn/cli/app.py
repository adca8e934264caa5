"""``cldyn serve``: the local web page (optional extra ``cldyn[app]``)."""

from __future__ import annotations

import argparse
import importlib

from cldyn.app.backend import AppConfig
from cldyn.cli.common import set_threads
from cldyn.errors import CldynError
from cldyn.runtime import require_extra

APP_MODULES = ("fastapi", "uvicorn", "multipart")  # what cldyn[app] installs (python-multipart is "multipart")


def cmd_serve(args: argparse.Namespace) -> int:
    for module in APP_MODULES:
        require_extra(module, "app", "cldyn serve")
    # Loaded only by this command, after the check: the rest of the CLI works without the extra.
    server = importlib.import_module("cldyn.app.server")
    set_threads(args.threads)
    networks = {}
    for item in args.network or []:
        name, sep, rest = item.partition("=")
        spec, _, weights = rest.rpartition("@")
        if not (sep and spec and weights):
            raise CldynError(f"--network expects NAME=module:Class@WEIGHTS, got {item!r}")
        networks[name] = (spec, weights)
    cfg = AppConfig(max_upload_bytes=int(args.max_upload_mb * 2**20), device=args.device, networks=networks)
    server.serve(args.host, args.port, cfg)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = AppConfig()
    s = sub.add_parser("serve", help="a local web page: fuse your own pair with the VFN and with CLDyN for a task",
                       description="Start a local web page (http://HOST:PORT/) to fuse an uploaded or bundled pair "
                                   "with the VFN and with CLDyN customised for a task, side by side with the task's "
                                   "prediction, metrics and timings. Needs: pip install 'cldyn[app]'.")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    s.add_argument("--port", type=int, default=8765, help="port")
    s.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20, help="largest file accepted")
    s.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto")
    s.add_argument("--network", nargs="*", action="extend", metavar="NAME=module:Class@WEIGHTS",
                   help="offer your own network on the page too, e.g. person=my_nets:PersonDetector@person.safetensors")
    s.add_argument("--threads", type=int)
    s.set_defaults(func=cmd_serve)
