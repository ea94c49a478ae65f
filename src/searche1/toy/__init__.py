"""The toy base policy's warm start: scaffolding that makes a tiny model able to search in the toy world (and a
small real model able to emit the protocol's tags), not the paper's algorithm. `warmstart.py` trains,
`episodes.py` makes what it trains and is probed on, `card.py` writes the model card."""
