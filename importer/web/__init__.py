"""`lsq-import serve`: the web page for sales-ops, on top of the same library the CLI uses.

`serve()` starts it: on 127.0.0.1 by default, with a per-start access token in the printed address
(exchanged for an HttpOnly cookie on first use, as Jupyter does). Binding any other address needs
LSQ_WEB_PASSWORD or LSQ_WEB_TOKEN. With `sandbox=True` it runs against the built-in sandbox.
"""

from __future__ import annotations

import contextlib
import socket
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import uvicorn

from importer.account import MetadataSettings, default_cache_dir
from importer.client import HOST_ENV, Credentials
from importer.errors import UsageError
from importer.ledger import state_dir
from importer.sandbox import Sandbox
from importer.throttle import RateLimit
from importer.web.app import DEFAULT_MAX_UPLOAD_BYTES, Settings, WebApp

PASSWORD_ENV = "LSQ_WEB_PASSWORD"  # noqa: S105 - the name of a variable, not a password
TOKEN_ENV = "LSQ_WEB_TOKEN"  # noqa: S105 - the name of a variable
LOOPBACK = "127.0.0.1"


def serve(
    *,
    port: int = 8000,
    mappings_dir: Path = Path("mappings"),
    bind: str = LOOPBACK,
    sandbox: bool = False,
    environ: dict[str, str],
    out: TextIO,
    max_upload_bytes: int | None = None,
) -> int:
    """Run the web server until Ctrl-C; print the address (with its token) first."""
    password = environ.get(PASSWORD_ENV) or None
    token = environ.get(TOKEN_ENV) or None
    if bind not in {LOOPBACK, "localhost", "::1"} and not (password or token):
        raise UsageError(
            f"--bind {bind} lets other machines reach the page: set {PASSWORD_ENV} (or {TOKEN_ENV}) first"
        )
    with ExitStack() as stack:
        if sandbox:
            box = stack.enter_context(Sandbox(rate_limit=(25, 1.0)))
            host, credentials, limit, label = (
                box.url,
                Credentials(box.access_key, box.secret_key),
                RateLimit(25, 1.0),
                "sandbox (nothing reaches LeadSquared)",
            )
        else:
            host = environ.get(HOST_ENV, "")
            if not host:
                raise UsageError("no host: set LSQ_HOST (e.g. api-in21.leadsquared.com), or use --sandbox")
            credentials, limit, label = Credentials.from_env(environ), RateLimit(25, 5.0), ""
        settings = Settings(
            host=host,
            credentials=credentials,
            mappings_dir=Path(mappings_dir),
            state_dir=state_dir(environ),
            metadata=MetadataSettings(default_cache_dir(environ), 12.0, False),
            rate_limit=limit,
            password=password,
            max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
            account_label=label,
        )
        if token:
            settings.token = token
        app = WebApp(settings).starlette()
        sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
        sock.listen(128)  # connections wait in the queue until the server takes them
        shown = "127.0.0.1" if bind in {"0.0.0.0", "::"} else bind  # noqa: S104 - only a display name
        real_port = sock.getsockname()[1]
        print(f"lsq-import web page: http://{shown}:{real_port}/?token={settings.token}", file=out)
        print(
            f"Open that address in a browser (it holds this start's access token). Mappings: {mappings_dir}. "
            "Ctrl-C stops the server.",
            file=out,
        )
        out.flush()
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    return 0
