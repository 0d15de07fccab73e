"""HTTP: Dataverse webhook (RemoteExecutionContext) → the change applied to Campaign inline."""

import azure.functions as func

from shared.app import get_app


def main(req: func.HttpRequest) -> func.HttpResponse:
    answer = get_app().webhook(req.method, req.get_body(), req.headers)
    return func.HttpResponse(answer.json(), status_code=answer.status, mimetype="application/json")
