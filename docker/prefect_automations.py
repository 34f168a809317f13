"""The two automations that let a SenBERT work pool survive a worker that dies mid-run.

    python docker/prefect_automations.py            # against $PREFECT_API_URL (compose's deploy does this)
    python docker/prefect_automations.py --delete   # remove them

What Prefect 3.9 does by itself when a worker (its container, its machine) dies while a flow
run is executing: nothing. The run's process died with the worker, nobody reports a final
state, and the server keeps the run (and its running task runs) `Running` for ever: the
server has no service that notices it. Flow-level `retries` do not help either: they are
applied by the run's own process when the flow raises (the server turns a proposed `Failed`
into `AwaitingRetry`), never to a run whose process is gone. Prefect's answer for self-hosted
servers is heartbeats plus automations (docs: "How to detect and respond to zombie flows"):

1. ``senbert: crash unresponsive flow runs``: flow runs emit a heartbeat event every
   ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (30 at least; docker/compose.yaml sets 30 on
   the workers, whose flow-run processes inherit it). A run that emitted one and then, within
   ``--within`` seconds (90 by default), neither another nor a final state is set `Crashed`.
2. ``senbert: retry crashed deployment runs``: a deployment's run that ended `Crashed` in its
   first ``--retries`` attempts (2 by default: the event's ``prefect.run-count`` label) is put
   back to `Scheduled` (named `AwaitingRetry`), so that a live worker of the pool picks the
   same flow run up again. Subflow runs (no deployment) are left alone: their parent's new
   attempt makes new ones. A run that crashes more often stays `Crashed` for a person to look at.

A run that is retried this way does not redo finished work: ``build-features``' tasks are
cached by the feature-cache key (their records on the shared volume), so the clips done
before the crash end `Cached`, and ``score`` writes the files' scores once they are all
scored. Idempotent: existing automations of these names are replaced.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

CRASH = "senbert: crash unresponsive flow runs"
RETRY = "senbert: retry crashed deployment runs"


def crash_automation(within_s: float) -> Automation:
    return Automation(
        name=CRASH,
        description=f"A flow run without a heartbeat for {within_s:.0f} s (its worker died) is set Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, name="Crashed",
                                    message=f"No heartbeat for {within_s:.0f} s: the worker running it is gone "
                                            "(marked by the automation '" + CRASH + "').")],
    )


def retry_automation(retries: int) -> Automation:
    return Automation(
        name=RETRY,
        description=f"A deployment's run that crashed in one of its first {retries} attempts is scheduled again.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"],
                                         "prefect.run-count": [str(n) for n in range(1, retries + 1)]}),
            match_related=ResourceSpecification({"prefect.resource.role": "deployment"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(seconds=0),
        ),
        actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", force=True,
                                    message="Crashed (its worker died): scheduled again for a live worker "
                                            "(automation '" + RETRY + "').")],
    )


def remove(name: str) -> bool:
    try:
        return Automation.read(name=name).delete()
    except ValueError:  # no automation of that name
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--within", type=float, default=90.0,
                    help="seconds without a heartbeat after which a running flow run is set Crashed (default 90; "
                         "at least 2x PREFECT_FLOWS_HEARTBEAT_FREQUENCY)")
    ap.add_argument("--retries", type=int, default=2,
                    help="how many times a crashed deployment run is scheduled again (default 2; 0: never)")
    ap.add_argument("--delete", action="store_true", help="remove the two automations and exit")
    a = ap.parse_args()
    for name in (CRASH, RETRY):
        while remove(name):
            pass
    if a.delete:
        print("removed the automations", CRASH, "and", RETRY)
        return 0
    made = [crash_automation(a.within).create()]
    if a.retries > 0:
        made.append(retry_automation(a.retries).create())
    for m in made:
        print(f"automation {m.name!r}: {m.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
