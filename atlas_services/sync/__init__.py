"""The Sentry Synchronizer (design §5): the secondary pulls the primary's environment over SSH."""
