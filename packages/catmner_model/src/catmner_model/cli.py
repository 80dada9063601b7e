"""The `catmner` command line: one typer app; each command group lives in its own module.

Command modules only parse options and call plain functions; heavy imports (torch) happen inside commands so
that `catmner --help` stays fast.
"""

from __future__ import annotations

import typer

from catmner_model import cli_data, cli_features, cli_train

app = typer.Typer(
    help="CAT-MNER: multimodal named entity recognition with knowledge-refined cross-modal attention.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
cli_data.register(app)
cli_features.register(app)
cli_train.register(app)


def main() -> None:
    """Entry point of the `catmner` script."""
    app()
