"""Timer (off unless VERIFY_SYNC_ENABLED): compare Dynamics and Campaign record by record, repair drift."""

import azure.functions as func

from shared.app import get_app


def main(timer: func.TimerRequest) -> None:
    get_app().verify_sync(past_due=timer.past_due)
