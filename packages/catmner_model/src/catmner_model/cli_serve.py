"""`catmner serve MODEL`: option parsing only; the server is serve.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catmner_model.cli_common import UserError, friendly_errors


@friendly_errors
def serve_cli(
    model_dir: Annotated[Path, typer.Argument(help="A model directory (e.g. RUN/model).")],
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8765,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. Keep 127.0.0.1 and use an SSH tunnel for a remote machine."),
    ] = "127.0.0.1",
    max_upload_mb: Annotated[float, typer.Option(help="Largest image upload accepted, in MiB.")] = 8.0,
    captioner: Annotated[
        str | None, typer.Option(help="HF image-to-text model captioning uploads given without a caption.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also CATMNER_DEBUG=1).")] = False,
) -> None:
    """A local page: type a tweet, add an image or caption, see its entities and where each one looked."""
    from catmner_model.serve import serve

    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: expected 0-65535")
    if max_upload_mb <= 0:
        raise UserError("--max-upload-mb must be positive")
    serve(
        model_dir,
        host=host,
        port=port,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        captioner=captioner,
        echo=lambda line: typer.echo(line, err=line.startswith("warning")),
        verbose=verbose,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cli)
