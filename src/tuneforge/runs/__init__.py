"""Runs: the run directory, the contract between commands. `rundir` creates, locks and replaces it safely and
writes every file atomically; `reading` is the one place that parses what a run left (config.yaml,
model/tuneforge.json, eval.json, metrics.jsonl) for every command that reads a finished run.
"""
