"""HQ: the sync server, its storage and its verdicts; insight in ``sync.hq.insight``."""
