"""The workbench's aiohttp application: the page and its assets, the JSON API, serving.

Routes (``/api/*`` need the bearer token when one is set; the page and its assets do not: they
hold no data)::

    GET  /                      the page (static/index.html); /static/* its CSS and JS
    GET  /api/info              engine, scoring server, fusion methods, instruction presets
    GET  /api/indices           indices with their text and vector fields (engine mappings)
    POST /api/compare           CompareRequest -> both columns (connector/workbench/compare.py)
    GET  /api/judgments?index=&field=&query=    that query's grades
    PUT  /api/judgments         Judgment -> the query's grades (workspace files rewritten)
    GET  /api/qrels             every judgment as TREC qrels text (export)
    POST /api/evaluate          EvaluateRequest -> erank eval on the judged queries
    GET  /api/evaluation[?folder=]   the view of the workspace's (or a folder's) eval.json

Errors are the REST front's JSON (connector/rest/errors.py): 400 naming each bad field, 401,
404, 405, 413; the engine's refusals keep their status (a failure to reach it is 502); a scoring
server that is down is no error: Compare answers the engine's own order, marked failed open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from connector.rest.app import MAX_BODY, json_errors, token_refusal
from connector.rest.errors import error_response, json_response, validation_error
from connector.rewrite.config import ConfigError, ProxyConfig, ScoringServerConfig
from connector.telemetry import SERVER_LOG, instrument
from connector.workbench.compare import CompareRequest, compare
from connector.workbench.engine import Engine, EngineFailure
from connector.workbench.evaluate import EvaluateRequest, NothingJudged, evaluate, load_view
from connector.workbench.workspace import Judgment, Workspace
from connector.wrapping import Reranking
from erank_contract.instructions import PRESETS
from erank_contract.security import ClientSecurity
from erank_contract.vocabulary import FUSION_METHODS

log = logging.getLogger("erank.workbench")
STATIC = Path(__file__).parent / "static"
MAX_WORKBENCH_BODY = 1024 * 1024
DEFAULT_PORT = 8090

ENGINE = web.AppKey("engine", Engine)
RERANKING = web.AppKey("reranking", Reranking)
WORKSPACE = web.AppKey("workspace", Workspace)
SETTINGS = web.AppKey[dict[str, str]]("settings")
WB_TOKEN = web.AppKey("workbench_token", bytes)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


class BadBody(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _body(request: web.Request, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as err:
        raise BadBody(validation_error(err)) from err


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The token on ``/api/*``; bad bodies, the engine's refusals and refused settings as the
    one error JSON."""
    token = request.app.get(WB_TOKEN)
    api = token is not None and request.path.startswith("/api/")
    if api and (refusal := token_refusal(request, token)) is not None:  # type: ignore[arg-type]
        return refusal
    try:
        return await handler(request)
    except BadBody as bad:
        return bad.response
    except EngineFailure as err:
        status = err.status if 400 <= err.status < 600 else 502
        return error_response(status, "engine_error", err.reason)
    except (ConfigError, NothingJudged) as err:
        return error_response(400, "illegal_argument_exception", str(err))


async def page(request: web.Request) -> web.FileResponse:
    """``GET /``: the page."""
    return web.FileResponse(STATIC / "index.html")


async def info(request: web.Request) -> web.Response:
    """``GET /api/info``: 200."""
    settings: dict[str, str] = request.app[SETTINGS]
    return json_response({**settings, "fusion_methods": FUSION_METHODS, "presets": list(PRESETS)})


async def indices(request: web.Request) -> web.Response:
    """``GET /api/indices``: 200, or the engine's failure."""
    found = await request.app[ENGINE].indices()
    return json_response({"indices": [i.as_json() for i in found]})


async def compare_route(request: web.Request) -> web.Response:
    """``POST /api/compare``: 200 (also when reranking failed open: see ``erank.status``),
    400 for a bad field, the engine's status for its refusal."""
    ask = await _body(request, CompareRequest)
    return json_response(await compare(request.app[RERANKING], request.app[ENGINE], ask))


def _query_params(request: web.Request) -> tuple[str, str, str]:
    missing = [k for k in ("index", "field", "query") if not request.query.get(k)]
    if missing:
        violations = [(k, "required query parameter") for k in missing]
        reason = "; ".join(f"{k}: required query parameter" for k in missing)
        raise BadBody(error_response(400, "illegal_argument_exception", reason, violations))
    return request.query["index"], request.query["field"], request.query["query"]


async def get_judgments(request: web.Request) -> web.Response:
    """``GET /api/judgments?index=&field=&query=``: 200 (``qid`` null when never judged)."""
    index, field, text = _query_params(request)
    query = request.app[WORKSPACE].find(index, field, text)
    if query is None:
        return json_response({"qid": None, "query": text, "index": index, "field": field,
                              "grades": {}})  # fmt: skip
    return json_response(query.as_json())


async def put_judgment(request: web.Request) -> web.Response:
    """``PUT /api/judgments``: 200 with the query's grades; 400 naming a bad field."""
    judgment = await _body(request, Judgment)
    return json_response(request.app[WORKSPACE].judge(judgment).as_json())


async def qrels(request: web.Request) -> web.Response:
    """``GET /api/qrels``: every judgment as TREC qrels (a download)."""
    disposition = {"Content-Disposition": 'attachment; filename="qrels.txt"'}
    return web.Response(text=request.app[WORKSPACE].qrels_text(), headers=disposition)


async def evaluate_route(request: web.Request) -> web.Response:
    """``POST /api/evaluate``: 200 with the evaluation's view; 400 with nothing judged."""
    ask = await _body(request, EvaluateRequest)
    app = request.app
    security = app[RERANKING].config.scoring_server
    result = await evaluate(app[WORKSPACE], app[ENGINE], app[SETTINGS]["reranker"], security, ask)
    return json_response(result)


async def evaluation(request: web.Request) -> web.Response:
    """``GET /api/evaluation[?folder=]``: 200 with the view, 404 when the folder has none."""
    folder = Path(request.query.get("folder") or request.app[WORKSPACE].root / "eval")
    found = load_view(folder)
    if found is None:
        return error_response(404, "resource_not_found_exception", f"no eval.json in {folder}")
    return json_response(found)


def create_app(
    engine_url: str,
    reranker: str,
    workspace: Path,
    token: str | None = None,
    security: ClientSecurity | None = None,
) -> web.Application:
    """The workbench for the engine at ``engine_url`` and the scoring server(s) at
    ``reranker``, judgments kept in ``workspace`` (created if missing)."""
    app = web.Application(middlewares=[json_errors, _errors], client_max_size=MAX_WORKBENCH_BODY)
    instrument(app)
    app[MAX_BODY] = MAX_WORKBENCH_BODY
    app[SETTINGS] = {"engine": engine_url, "reranker": reranker, "workspace": str(workspace)}
    workspace.mkdir(parents=True, exist_ok=True)
    app[WORKSPACE] = Workspace(workspace)
    if token:
        app[WB_TOKEN] = token.encode()
    server = ScoringServerConfig(**(security or ClientSecurity()).model_dump())
    config = ProxyConfig(scoring_server=server)

    async def connections(app: web.Application) -> AsyncIterator[None]:
        app[ENGINE] = Engine(engine_url)
        await app[ENGINE].open()
        app[RERANKING] = Reranking(reranker, config, elasticsearch=False)
        yield
        await app[RERANKING].close_async()
        await app[ENGINE].close()

    app.cleanup_ctx.append(connections)
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/indices", indices)
    app.router.add_post("/api/compare", compare_route)
    app.router.add_get("/api/judgments", get_judgments)
    app.router.add_put("/api/judgments", put_judgment)
    app.router.add_get("/api/qrels", qrels)
    app.router.add_post("/api/evaluate", evaluate_route)
    app.router.add_get("/api/evaluation", evaluation)
    return app


def run(app: web.Application, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve until SIGINT/SIGTERM (what ``erank workbench`` does)."""
    settings = app[SETTINGS]
    where = f"http://{host}:{port}"
    log.info("erank workbench on %s -> engine %s, scoring server %s, workspace %s", where,
             settings["engine"], settings["reranker"], settings["workspace"])  # fmt: skip
    web.run_app(app, host=host, port=port, print=log.info, access_log=None, logger=SERVER_LOG)
