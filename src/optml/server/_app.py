"""The FastAPI application: the REST API under /api, the server-rendered pages, the static files
(plotly's JavaScript from the installed package), and token access for anything that changes
or runs something."""

from __future__ import annotations

import hmac
import math
import os
import re
import secrets
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi import (
    Path as PathParam,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from optml.errors import OptMLError, StudyNotFoundError
from optml.server import _charts
from optml.service import MAX_UPLOAD_BYTES, Conflict, StudyService, safe_filename
from optml.storage import TrialRow
from optml.trial import Trial, TrialState

HERE = Path(__file__).parent
COOKIE = "optml_token"
# Chart figures kept (least recently used dropped first).
CHART_CACHE = 128
StudyName = Annotated[str, PathParam(min_length=1, max_length=255)]
TrialNumber = Annotated[int, PathParam(ge=0, le=2**31 - 1)]
StateName = Literal[tuple(s.value for s in TrialState)]  # type: ignore[valid-type]
ALGORITHMS = ("auto", "grid", "random", "sobol", "lhs", "tpe", "gp", "forest", "cmaes", "nsga2")


def load_token(files_dir: str | Path) -> tuple[str, bool]:
    """The access token: ``$OPTML_TOKEN``, else the one kept in ``files_dir/token`` (made and
    kept there, readable by this user only, on first start). Returns it and whether it was
    made just now (the caller prints it once)."""
    env = os.environ.get("OPTML_TOKEN")
    if env:
        return env, False
    path = Path(files_dir) / "token"
    if path.is_file():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def _plain(obj: Any) -> Any:
    """JSON-safe: non-finite numbers become strings ("nan", "inf"), datetimes ISO text."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def trial_json(t: Trial, *, full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": t.number,
        "state": t.state.value,
        "params": t.params,
        "value": t.value,
        "metrics": t.metrics,
        "duration_s": t.duration_s,
        "started_at": t.started_at,
        "finished_at": t.finished_at,
        "attempts": t.attempts,
        "host": t.host,
        "runner": t.runner or t.worker,
        "error": (t.error or "").strip().splitlines()[-1] if t.error else None,
    }
    if full:
        out.update(
            intermediate={str(k): v for k, v in sorted(t.intermediate.items())},
            error=t.error,
            logs=(t.logs or "")[-20000:],
            worker=t.worker,
            heartbeat_at=t.heartbeat_at,
            user_attrs=t.user_attrs,
        )
    return _plain(out)


class CreateStudy(BaseModel):
    """A study spec in the YAML files' schema, and whether to start it at once."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]
    start: bool = False
    workers: int | None = Field(default=None, ge=1, le=1024)


class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workers: int | None = Field(default=None, ge=1, le=1024)


def create_app(
    storage: str | None = None,
    files_dir: str | Path | None = None,
    token: str | None = None,
) -> FastAPI:
    """The app over ``storage`` (a URL; SQLite ``optml.db`` by default), keeping uploads and run
    logs under ``files_dir``; ``token`` guards every mutating call (default: :func:`load_token`)."""
    service = StudyService(storage, files_dir)
    if token is None:
        token, _ = load_token(service.files_dir)
    app = FastAPI(
        title="OptML",
        description="Hyperparameter studies: create, run, stop, and read every trial.",
        version="0.1.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.service = service
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["fmt"] = _fmt
    plotly_js = _plotly_js()
    chart_cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
    app.state.chart_cache = chart_cache

    # -- access --------------------------------------------------------------------------
    def has_token(request: Request) -> bool:
        given = ""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        elif COOKIE in request.cookies:
            given = request.cookies[COOKIE]
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def require_token(request: Request) -> None:
        if not has_token(request):
            raise HTTPException(
                401,
                "this call needs the server's token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    Auth = Depends(require_token)

    # -- errors --------------------------------------------------------------------------
    @app.exception_handler(StudyNotFoundError)
    async def _not_found(request: Request, exc: StudyNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(OptMLError)
    async def _invalid(request: Request, exc: OptMLError) -> JSONResponse:
        message = str(exc)
        # Messages start with the field they are about ("spec: budget.trials: ..."): name it.
        loc: list[str] = ["body"]
        for part in message.split(": ")[:-1]:
            if not re.fullmatch(r"[A-Za-z_][\w.\[\]]{0,80}", part):
                break
            loc += part.split(".")
        return JSONResponse(
            {"detail": [{"loc": loc, "msg": message, "type": "value_error"}]},
            status_code=422,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    # -- API: studies --------------------------------------------------------------------
    def summary_json(s: Any) -> dict[str, Any]:
        return _plain(
            {
                "name": s.name,
                "state": s.state,
                "metric": s.metric.name,
                "direction": s.metric.direction,
                "trials": s.n_trials,
                "counts": s.counts,
                "best_value": s.best_value,
                "created_at": s.created_at,
            }
        )

    def study_json(name: str) -> dict[str, Any]:
        study = service.load(name)
        counts = service.storage.count_trials(study.id)
        best = study._best()
        spec = {k: v for k, v in study.spec.items() if not k.startswith("_")}
        return _plain(
            {
                "name": study.name,
                "state": study.state,
                "running": service.running(study),
                "metric": study.metric.name,
                "direction": study.metric.direction,
                "counts": counts,
                "trials": sum(counts.values()),
                "budget": study.budget,
                "best": trial_json(best) if best is not None else None,
                "spec": spec,
            }
        )

    @app.get("/api/studies", tags=["studies"])
    def list_studies() -> list[dict[str, Any]]:
        return [summary_json(s) for s in service.list_studies()]

    @app.post("/api/studies", status_code=201, tags=["studies"], dependencies=[Auth])
    def create_study(body: CreateStudy) -> dict[str, Any]:
        name = body.spec.get("name")
        base = service.folder(name, create=False) if isinstance(name, str) and name else None
        study = service.create(body.spec, base_dir=base)
        pid = service.start(study.name, workers=body.workers) if body.start else None
        return {"name": study.name, "pid": pid}

    @app.get("/api/studies/{name}", tags=["studies"])
    def get_study(name: StudyName) -> dict[str, Any]:
        return study_json(name)

    @app.delete("/api/studies/{name}", tags=["studies"], dependencies=[Auth])
    def delete_study(name: StudyName) -> dict[str, Any]:
        service.delete(name)
        return {"deleted": name}

    @app.post("/api/studies/{name}/start", tags=["runs"], dependencies=[Auth])
    def start_study(name: StudyName, body: StartRun | None = None) -> dict[str, Any]:
        return {"pid": service.start(name, workers=body.workers if body else None)}

    @app.post("/api/studies/{name}/resume", tags=["runs"], dependencies=[Auth])
    def resume_study(name: StudyName, body: StartRun | None = None) -> dict[str, Any]:
        return {"pid": service.resume(name, workers=body.workers if body else None)}

    @app.post("/api/studies/{name}/stop", tags=["runs"], dependencies=[Auth])
    def stop_study(name: StudyName) -> dict[str, Any]:
        return {"asked": service.stop(name)}

    # -- API: trials ---------------------------------------------------------------------
    @app.get("/api/studies/{name}/trials", tags=["trials"])
    def list_trials(
        name: StudyName,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        sort: Literal["number", "value", "duration", "state"] = "number",
        order: Literal["asc", "desc"] = "asc",
        state: Annotated[list[StateName] | None, Query()] = None,  # type: ignore[valid-type]
    ) -> dict[str, Any]:
        page = service.trials_page(
            name, offset=offset, limit=limit, sort=sort, descending=order == "desc", states=state
        )
        return {
            "total": page.total,
            "offset": offset,
            "limit": limit,
            "trials": [trial_json(t) for t in page.trials],
        }

    @app.get("/api/studies/{name}/trials/{number}", tags=["trials"])
    def get_trial(name: StudyName, number: TrialNumber) -> dict[str, Any]:
        return trial_json(service.trial(name, number), full=True)

    @app.get("/api/studies/{name}/best", tags=["trials"])
    def get_best(name: StudyName) -> dict[str, Any] | None:
        best = service.best(name)
        return None if best is None else trial_json(best, full=True)

    @app.get("/api/studies/{name}/export", tags=["trials"])
    def export(name: StudyName, format: Literal["csv", "json"] = "json") -> Response:
        text = service.export(name, format)
        media = "text/csv" if format == "csv" else "application/json"
        filename = safe_filename(f"{name}.{format}")
        return Response(
            text,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @app.get("/api/studies/{name}/charts/{chart}", tags=["charts"])
    def chart(
        name: StudyName,
        chart: Literal["history", "bars", "parallel", "slice", "contour", "importance", "timeline"],
        x: Annotated[str | None, Query(max_length=255)] = None,
        y: Annotated[str | None, Query(max_length=255)] = None,
    ) -> dict[str, Any]:
        record = service.storage.load_study(name)
        metric = record.metrics[0]
        storage = service.storage
        # A figure is kept until a trial of the study changes (a finished study's charts are
        # computed once); the version is one indexed read.
        key = (record.id, chart, x, y, storage.trials_version(record.id))
        cached = chart_cache.get(key)
        if cached is not None:
            chart_cache.move_to_end(key)
            return cached
        # Every chart but the timeline is drawn from completed trials, without their times;
        # parameters are read for the trials a chart shows, not for the whole study.
        if chart in _charts.COMPLETE_ONLY:
            rows = [
                TrialRow(n, "COMPLETE", v, None, None, None, None, None, None)
                for n, v in storage.completed_values(record.id)
            ]
        else:
            rows = storage.trial_rows(record.id)
        fig = _plain(
            _charts.figure(
                chart,
                rows,
                metric.name,
                metric.direction == "minimize",
                x,
                y,
                fetch=lambda numbers: storage.trial_params(record.id, numbers),
            )
        )
        chart_cache[key] = fig
        while len(chart_cache) > CHART_CACHE:
            chart_cache.popitem(last=False)
        return fig

    @app.post("/api/studies/{name}/files", status_code=201, tags=["files"], dependencies=[Auth])
    async def upload(name: StudyName, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        content = await file.read(MAX_UPLOAD_BYTES + 1)
        path = service.save_upload(name, file.filename or "", content)
        return {"name": path.name, "size": len(content)}

    @app.get("/api/models", tags=["models"])
    def models() -> dict[str, Any]:
        return _catalog()

    # -- pages ---------------------------------------------------------------------------
    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly() -> Response:
        return FileResponse(plotly_js, media_type="text/javascript")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
            '<rect width="16" height="16" rx="3" fill="#24364b"/>'
            '<path d="M3 12 L6 7 L9 9 L13 3" stroke="#7fd" stroke-width="2" fill="none"/></svg>'
        )
        return Response(svg, media_type="image/svg+xml")

    @app.get("/static/{filename}", include_in_schema=False)
    def static(filename: str) -> Response:
        if filename not in ("app.js", "app.css"):
            raise HTTPException(404, "no such file")
        media = "text/javascript" if filename.endswith(".js") else "text/css"
        return FileResponse(HERE / "static" / filename, media_type=media)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, template, {"authed": has_token(request), **context}, status_code=status
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def studies_page(request: Request) -> HTMLResponse:
        rows = service.list_studies()
        now = datetime.now(UTC)
        items = []
        for s in rows:
            budget = service.storage.load_study(s.name).budget
            items.append(
                {
                    "s": s,
                    "done": sum(v for k, v in s.counts.items() if TrialState(k).is_finished),
                    "budget": budget,
                    "elapsed": (now - s.created_at).total_seconds()
                    if s.created_at and s.state == "RUNNING"
                    else None,
                }
            )
        running = any(s.state == "RUNNING" for s in rows)
        return page(request, "studies.html", items=items, running=running)

    @app.get("/studies/{name}", response_class=HTMLResponse, include_in_schema=False)
    def study_page(request: Request, name: StudyName) -> HTMLResponse:
        try:
            info = study_json(name)
        except StudyNotFoundError as exc:
            return page(request, "error.html", status=404, message=str(exc))
        return page(request, "study.html", study=info)

    @app.get(
        "/studies/{name}/trials/{number}", response_class=HTMLResponse, include_in_schema=False
    )
    def trial_page(request: Request, name: StudyName, number: TrialNumber) -> HTMLResponse:
        try:
            trial = trial_json(service.trial(name, number), full=True)
        except OptMLError as exc:
            return page(request, "error.html", status=404, message=str(exc))
        return page(request, "trial.html", name=name, trial=trial)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", next=_local(next), error=None)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        token_: Annotated[str, Form(alias="token", max_length=1000)],
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        if not hmac.compare_digest(token_.encode(), token.encode()):
            return page(request, "login.html", status=401, next=_local(next), error="wrong token")
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=30 * 86400)
        return response

    @app.get("/new", response_class=HTMLResponse, include_in_schema=False)
    def new_page(request: Request) -> Response:
        if not has_token(request):
            return RedirectResponse("/login?next=/new", status_code=303)
        return page(
            request,
            "new.html",
            catalog=_catalog(),
            error=None,
            form={},
        )

    @app.post("/new", include_in_schema=False)
    async def new_study(request: Request) -> Response:
        if not has_token(request):
            return RedirectResponse("/login?next=/new", status_code=303)
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            name, workers = await _spec_from_form(service, form)
            service.start(name, workers=workers)
        except OptMLError as exc:
            return page(
                request,
                "new.html",
                status=422,
                catalog=_catalog(),
                error=str(exc),
                form=fields,
            )
        return RedirectResponse(f"/studies/{_quote(name)}", status_code=303)

    return app


def _local(url: str) -> str:
    """A redirect target on this server only."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise OptMLError(f"plotly's JavaScript is missing from the installed package ({path})")
    return path


def _catalog() -> dict[str, Any]:
    """The models the new-study form offers, with their default spaces and metrics."""
    from optml.models import ann, lms
    from optml.models.estimators import DATASETS, estimators

    models: dict[str, Any] = {
        "lms": {
            "label": "LMS adaptive filter (seed)",
            "metric": "test_error",
            "space": lms.SPACE,
            "task": "builtin",
        },
        "ann": {
            "label": "ANN perceptron (seed)",
            "metric": "test_error",
            "space": ann.SPACE,
            "task": "builtin",
        },
    }
    for key, (task, space) in estimators().items():
        models[f"sklearn:{key}"] = {
            "label": f"scikit-learn {key.replace('_', ' ')} ({task})",
            "metric": "error",
            "space": space,
            "task": task,
        }
    return {"models": models, "datasets": DATASETS, "algorithms": list(ALGORITHMS)}


async def _spec_from_form(service: StudyService, form: Any) -> tuple[str, int | None]:
    """Create the study the new-study form describes; returns its name and the workers."""
    import yaml

    from optml.errors import SpecError
    from optml.models.estimators import DATASETS, write_dataset

    def text(key: str, default: str = "") -> str:
        v = form.get(key)
        return v.strip() if isinstance(v, str) else default

    def number(key: str, lo: int, hi: int) -> int | None:
        raw = text(key)
        if not raw:
            return None
        if not re.fullmatch(r"\d{1,9}", raw) or not lo <= int(raw) <= hi:
            raise SpecError(f"{key}: {raw!r} must be a whole number from {lo} to {hi}")
        return int(raw)

    name = text("name")
    if not name:
        raise SpecError("name: give the study a name")
    catalog = _catalog()["models"]
    model = text("model")
    spec: dict[str, Any] = {"name": name}
    folder = service.folder(name)

    async def saved(key: str) -> Path | None:
        upload = form.get(key)
        if upload is None or isinstance(upload, str) or not upload.filename:
            return None
        content = await upload.read(MAX_UPLOAD_BYTES + 1)
        return service.save_upload(name, upload.filename, content)

    if model == "upload":
        path = await saved("model_file")
        if path is None or path.suffix != ".py":
            raise SpecError(
                "model_file: upload a Python file (.py): a model module or one with objective()"
            )
        source = path.read_text(errors="replace")
        if re.search(r"^def objective\(", source, re.M):
            spec["objective"] = {"function": f"{path}:objective"}
        else:
            spec["objective"] = {"module": str(path)}
    elif model in ("lms", "ann"):
        spec["objective"] = {"module": f"optml.models.{model}"}
    elif model in catalog:
        spec["objective"] = {"function": f"optml.models.estimators:{model.split(':', 1)[1]}"}
    else:
        raise SpecError(
            f"model: {model!r} is not offered; choose one of {', '.join(catalog)} or upload"
        )
    dataset = text("dataset")
    if dataset == "upload":
        path = await saved("data_file")
        if path is None:
            raise SpecError("data_file: choose a CSV file to upload (last column: the target)")
        spec["data"] = str(path)
    elif dataset in DATASETS:
        spec["data"] = str(write_dataset(dataset, folder / f"{dataset}.csv"))
    elif dataset not in ("", "generated"):
        raise SpecError(
            f"dataset: {dataset!r} is not offered; choose one of {', '.join(DATASETS)} or upload"
        )
    try:
        space = yaml.safe_load(text("space") or "{}")
    except yaml.YAMLError as exc:
        raise SpecError(f"space: not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(space, dict) or not space:
        raise SpecError("space: give a mapping of parameter names to ranges or value lists")
    spec["space"] = space
    default_metric = catalog.get(model, {}).get("metric", "test_error")
    direction = text("direction", "minimize")
    if direction not in ("minimize", "maximize"):
        raise SpecError(f"direction: {direction!r}; choose minimize or maximize")
    spec["metric"] = {"name": text("metric") or default_metric, "direction": direction}
    algorithm = text("algorithm", "auto") or "auto"
    if algorithm not in ALGORITHMS:
        raise SpecError(f"algorithm: {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    spec["algorithm"] = algorithm
    trials = number("trials", 1, 1_000_000)
    spec["budget"] = {"trials": trials or 20}
    workers = number("workers", 1, 256)
    backend = text("backend", "local") or "local"
    spec["execution"] = {"backend": backend, **({"workers": workers} if workers else {})}
    service.create(spec, base_dir=folder)
    return name, workers
