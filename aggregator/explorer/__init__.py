"""The contribution explorer: a read-only web page of a federation, read from its registry on chain.

- config: ExplorerConfig, the chain, the registry and the run's outputs folder (validated once)
- reader: ChainReader, each page's data read from the registry's events and views
- view:   pure parsing, formatting and SVG charts
- app:    make_app (FastAPI, server-rendered HTML) and serve (uvicorn)
"""

from aggregator.explorer.app import make_app, serve
from aggregator.explorer.config import ExplorerConfig
from aggregator.explorer.reader import ChainReader, NotARegistry, NotFound
from aggregator.explorer.view import BadInput

__all__ = ["BadInput", "ChainReader", "ExplorerConfig", "NotARegistry", "NotFound", "make_app", "serve"]
