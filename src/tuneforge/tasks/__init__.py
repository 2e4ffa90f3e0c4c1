"""Tasks: what the model learns, behind one interface (tasks/base.py). A task turns vetted Records into
examples, batches and a loss, loads the model with the right head, evaluates and predicts, and answers every
question the other stages ask about it: which columns are scanned for PII, compared for leakage and used to
stratify, which metrics it reports and in which direction they improve, its forgetting probe and replay source,
its PEFT task type. Code outside tasks/ asks the task and never branches on its name.
"""
