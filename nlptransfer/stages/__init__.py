"""Learning over time (the library side of `python -m nlptransfer.continual`): a sequence of stages, each a data
section and its labels, learned one after another by a method that limits forgetting, every earlier stage scored
after each stage.

- `settings.py`: the options (stages, scenario, methods and their sections) and every check made before anything is
  written (stdlib only: `--help` and option errors answer at once).
- `stage_data.py`: each stage's seeded splits kept to its labels (`extend=runs/A`: the run's own first).
- `scores.py`: the accuracy matrix's summaries (average accuracy, backward and forward transfer, forgetting).
- `methods.py`: what each method adds to a stage's training: the replay buffer, EWC's Fisher diagonal and penalty,
  LwF's distillation loss, the grown head; `StageModule`, whose `forward(**batch)` returns the stage's loss.
- `learner.py`: the models a sequence holds (one shared encoder under one head or a head per stage; a LoRA adapter
  per stage), scoring a stage, saving a stage's checkpoint and the final model folders.
- `training.py`: one stage on `engine.loop.fit` (single-head batches), EWC's memory after it.
- `sequence.py`: the command's folder (marker, lock, state.json written atomically after every stage), the stages in
  turn for each method, resuming at the stage where a killed sequence stopped.
- `report.py`: report.md, the heat-maps of the accuracy matrices and metrics.json.
"""
