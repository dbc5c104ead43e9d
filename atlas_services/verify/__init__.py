"""Sentry Verifier: exercise every business service end to end, on primary and secondary alike.

    model        results, cycles, state changes (pure)
    probes/      one module per service: web, mail, database, files, system
    runner       runs probes concurrently, each under its own timeout
    report       history, journal entries, textfile, status page, mail on change
    environment  the verifier's own accounts and objects (`atlas verify setup`)
    cycle        one locked cycle on the box: targets → probes → runner → report
    cli          `atlas verify`
"""
