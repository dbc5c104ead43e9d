"""Sentry Verifier: exercise every business service end to end, on primary and secondary alike.

    probes/      one module per check: web, mail, database, files, raid, space, sync, clock, units
    runner       runs probes concurrently, each under its own timeout
    report       history, journal entries, textfile, status page, mail on change
    environment  the verifier's own accounts and objects (`atlas verify setup`)
    cycle        one locked cycle on the box: targets → probes → runner → report
    cli          `atlas verify`

What a cycle produces (results, cycles, state changes) is atlas_services/results.py: the
update and the door read it too.
"""
