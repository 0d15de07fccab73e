"""Timer: Dynamics tables → Campaign through change tracking (initial load, then deltas)."""

import azure.functions as func

from shared.app import get_app


def main(timer: func.TimerRequest) -> None:
    get_app().contacts_sync(past_due=timer.past_due)
