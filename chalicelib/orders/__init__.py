"""Orders: placing them (`desk`, with `rules` and the `store` of claims and the ledger),
and acting on orders that exist on the panel (`existing`: reads, refills, cancels)."""
