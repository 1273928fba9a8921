"""Active learning: rounds of train, score the pool, pick the texts to label next, hand them to a person.

`options.py` (the command's options; light), `queries.py` (query strategies on probabilities and embeddings),
`stopping.py` (kappa between rounds, the learning curve's slope), `state.py` (the folder: labels append-only and
fsynced, rounds, the current batch, the lock), `scoring.py` (the pool's probabilities and embeddings), `loop.py`
(one round: a normal run on the labels so far via the Python API, then score and pick; the simulation),
`labeling.py` (to_label.csv and the terminal), `server.py` (the local labeling page).
`pool_cache.py` (a frozen encoder's pool outputs kept across rounds), `final.py` (labels.csv and the command training
the final model on it). `python -m nlptransfer.active` is the command
(`cli/active.py`). Importing this package loads no heavy library.
"""
