"""Updates that cannot break the primary (design §7): a module version is staged on the
primary without being selected there, tried on the secondary (which the Synchronizer makes
select it) while its Verifier runs, and promoted to the primary only after enough green
cycles; rollback and abort undo it in a moment.

    record.py   the primary's record: what is staged, what happened (record.json)
    rules.py    the pure decisions: green streaks, may it be promoted, is it compatible
    trial.py    the secondary's side: follow the primary's stage, report the trial
    marks.py    the secondary's trial markers (which module runs which staged version since when)
    primary.py  stage, promote, rollback, abort, status (on the primary)
    cli.py      `atlas update ...`
"""
