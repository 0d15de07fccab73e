"""HTTP GET (master key): the status as JSON, as `python -m shared.cli status --json` shows it."""

import json

import azure.functions as func

from shared.app import get_app
from shared.ops import collect_status


def main(req: func.HttpRequest) -> func.HttpResponse:
    status = collect_status(get_app())
    return func.HttpResponse(json.dumps(status, default=str), status_code=200, mimetype="application/json")
