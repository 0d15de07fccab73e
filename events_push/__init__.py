"""Timer: Campaign email events (I/O Events journal) → activities on the Dynamics contact timeline."""

import azure.functions as func

from shared.app import get_app


def main(timer: func.TimerRequest) -> None:
    get_app().events_push(past_due=timer.past_due)
