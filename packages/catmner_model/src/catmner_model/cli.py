"""The `catmner` command line: one typer app; each command group lives in its own module.

Command modules only parse options and call plain functions; heavy imports (torch) happen inside commands so
that `catmner --help` stays fast. Errors: one handler, `cli_common.friendly_errors` (``--debug``: tracebacks).
"""

from __future__ import annotations

from typing import Annotated

import typer

from catmner_model import cli_common, cli_data, cli_features, cli_serve, cli_train

app = typer.Typer(
    help="CAT-MNER: multimodal named entity recognition with knowledge-refined cross-modal attention.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also CATMNER_DEBUG=1).")] = False,
) -> None:
    cli_common._state["debug"] = debug


cli_data.register(app)
cli_features.register(app)
cli_train.register(app)
cli_serve.register(app)


def main() -> None:
    """Entry point of the `catmner` script."""
    app()
