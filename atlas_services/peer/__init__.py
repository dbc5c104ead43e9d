"""The one door between the two servers: what they may ask each other and how.

    protocol  the verbs and the strict parsing of a request (PROTOCOL version)
    client    ssh to the peer with the cluster's sync key, its host key pinned; failures told apart
    server    `atlas sync-serve` answering one request: one verb table, what a role serves from Role
    keys      the peer's key in an authorized_keys file sshd reads, forced to `atlas sync-serve`
    failures  how a call through the door (and a sync) fails: one kind per cause

It knows nothing of what the answers mean: the command that runs the server (door.py) hands
it the concerns' answers (the Synchronizer's listing, the update's trial, ...).
"""
