"""The Sentry Synchronizer (design §5): the secondary pulls the primary's environment over SSH,
through the door (atlas_services/peer).

    session    one sync: hello → list → fetch → follow the stage → select → results → compare → apply
    plan       what a sync fetches and changes (pure)
    listing    what a server's stores hold (the door's `list`)
    transfer   a version between servers: btrfs send → ssh → btrfs receive
    secondary  applying what was pulled; the mirror's bookkeeping
    manifest   what a server runs (the door's `manifest`); drift compares two
    state      state.json, and the one rule for "is the sync fresh?"
    cli        `atlas sync`
"""
