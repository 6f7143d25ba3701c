"""``erank workbench``: a relevance workbench in the browser (docs/WORKBENCH.md).

Compare the engine's own top hits with the ERank-fused ones (movements, every score, the
model's reasons), judge hits 0-3 into TREC qrels in a BEIR-layout workspace, and run
``erank eval`` on the judged queries. aiohttp like the REST front and the proxy; the page is
plain HTML, CSS and ES-module JavaScript shipped in ``static/`` (no build step, no CDN).
"""

from connector.rest.app import serving
from connector.workbench.app import create_app, run

__all__ = ["create_app", "run", "serving"]
