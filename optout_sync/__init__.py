"""Timer: Campaign opt-out changes → Dynamics (and the two-way conflict rule), every few minutes."""

import azure.functions as func

from shared.app import get_app


def main(timer: func.TimerRequest) -> None:
    get_app().optout_sync(past_due=timer.past_due)
