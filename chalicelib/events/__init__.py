"""Events: what happened to a caller's orders, refills and account, kept 30 days
(`model` is the event and its item; the log, the sync and the publishing sit beside it)."""
