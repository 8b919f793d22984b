"""outputs_kept: what a master owes its results when it cannot write an output.

A ``disk_full`` fault fills the filesystem of one output; the master must then stop with
the exit code its system documents for it, and every result it had accepted must be
either in its results file or handed over on its stderr (the injector records both when
the master stopped). What a resumed master then makes of them is exactly_once's business.
"""

from __future__ import annotations

from harness import contract
from harness.checks.context import NO_CONTEXT, CheckContext
from harness.checks.violations import Violation
from harness.contract import HARNESS, MASTER
from harness.history import History

__all__ = ["outputs_kept"]


def outputs_kept(history: History, context: CheckContext = NO_CONTEXT) -> list[Violation]:
    """For each master that stopped on a refused write: it exited with the documented
    ``output_failed`` code, and each result it accepted before it stopped is in the results
    file or among the result lines it printed."""
    check = "outputs_kept"
    documented = context.documented
    found: list[Violation] = []
    judged = 0
    for effect in history.select(contract.FAULT_EFFECT, src=HARNESS):
        if contract.fault_action(effect.get("action")).effect != "refused":
            continue
        if effect.get("verified") is not True:
            continue  # fault_coverage says why it proves nothing
        code = effect.get("exit_code")
        want = None if documented is None else documented.output_failed
        if want is None:
            message = "the system documents no exit code for an output it cannot write"
            found.append(Violation(check, message, (), (effect.line,), "unknown"))
        elif code != want:
            message = (
                f"the master stopped with exit code {code} when its {effect.get('output')} "
                f"output was full, expected {want}"
            )
            found.append(Violation(check, message, (), (effect.line,)))
        stopped_t = float(effect.get("stopped_t", effect.t))
        kept = set(effect.get("written") or ()) | set(effect.get("printed") or ())
        accepted = [
            event
            for event in history.select(src=MASTER)
            if event.ev in contract.TERMINAL_EVENTS
            and event.t < stopped_t
            and not event.get("recovered")
            and isinstance(event.get("job"), int)
        ]
        judged += len(accepted)
        for event in accepted:
            job = int(event.get("job"))
            if job not in kept:
                message = (
                    f"job {job}: its result was accepted by the master whose "
                    f"{effect.get('output')} output was full, yet it is neither in the results "
                    "file nor among the results it printed: lost with that master"
                )
                found.append(Violation(check, message, (job,), (event.line, effect.line)))
    context.judged(judged, "results accepted before a full disk")
    return found
