"""Training: the loop that turns encoded examples into updated weights. `loop.fit` reads as step, maybe
evaluate (validation: early stopping and best weights), maybe checkpoint; it knows only the loop protocol of a
task (batches, collate, loss, tokens, evaluate). Around it: exact-resume checkpoints, device/precision/RNG
decisions, speed levers that do not change what is learned, and the run log (metrics.jsonl, TensorBoard).
It hands the trained model back to the recipe, which evaluates and saves it.
"""
