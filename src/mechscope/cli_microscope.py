"""The Microscope verbs (registered by ``register``): ``microscope serve STORE`` and ``microscope export STORE
OUT``.  (``microscope build`` — computing the evidence into the store — is not written yet; a store written by
``mechscope examples`` / ``stats`` already has layers, examples, statistics and plots to browse.)"""

from __future__ import annotations

from pathlib import Path

import typer

microscope_app = typer.Typer(help="Browse a results store as an atlas of units: serve it locally or export a "
                                  "static site.", no_args_is_help=True)


@microscope_app.command("serve")
def serve(store: Path = typer.Argument(..., help="A results folder (index.sqlite + png/)."),
          port: int = typer.Option(8000, help="Port (0: any free one)."),
          host: str = typer.Option("127.0.0.1", help="Address to bind; the default is this machine only.")) -> None:
    """Serve STORE's pages at http://HOST:PORT/ until interrupted."""
    from mechscope.microscope.serve import make_server

    server = make_server(store, host=host, port=port)
    typer.echo(f"Microscope of {store} at http://{server.server_address[0]}:{server.server_address[1]}/ "
               "(Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@microscope_app.command("export")
def export(store: Path = typer.Argument(..., help="A results folder (index.sqlite + png/)."),
           out: Path = typer.Argument(..., help="Folder for the static site (outside the store).")) -> None:
    """Write STORE's whole site into OUT: open OUT/index.html from file:// or put it on any static host."""
    from mechscope.microscope.site import export as export_site

    counts = export_site(store, out)
    typer.echo(f"wrote {counts['pages']} pages and {counts['pngs']} PNGs ({counts['layers']} layers, "
               f"{counts['units']} units) to {out}; open {out / 'index.html'}")


def register(app: typer.Typer) -> None:
    app.add_typer(microscope_app, name="microscope")
