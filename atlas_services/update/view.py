"""The update's lines on the status page (and `atlas status`): what is staged or on trial."""

from __future__ import annotations

from atlas_services.errors import AtlasError
from atlas_services.paths import Layout
from atlas_services.roles import Role
from atlas_services.update import record, trial


def lines(role: str, required: int, layout: Layout = Layout()) -> list[str]:
    """One line per staged update (primary) or trial (secondary), and the last step taken;
    none when there is nothing to say. Never raises: the page must be written regardless."""
    try:
        if role == Role.SECONDARY:
            return [f"{m} {t.staged} on trial on this server since {t.since}: {t.green_cycles} of "
                    f"{required} green cycle(s) before it may be promoted"
                    + (f" (the count stops at {t.stopped_by})" if t.stopped_by else "")
                    for m, t in trial.report(layout).items() if t.staged is not None]
        if role != Role.PRIMARY:
            return []
        the_record = record.read(layout.update_record)
    except (AtlasError, OSError) as err:
        return [f"the update state cannot be read: {err}"]
    shown = [f"{u.module} {u.version} staged {u.staged_at} for a trial on the secondary; this server "
             f"runs {u.from_version or 'nothing'} until it is promoted ({required} green cycle(s) "
             "needed there)" for u in sorted(the_record.staged.values(), key=lambda u: u.module)]
    last = the_record.last_event()
    if last is not None:
        shown.append(f"last update step: {last.action} {last.module} {last.version} at {last.time}")
    return shown
