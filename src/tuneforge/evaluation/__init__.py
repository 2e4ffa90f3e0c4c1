"""Evaluation: turning predictions into numbers and pages. Classification metrics from scikit-learn,
generation metrics (exact match, token F1, ROUGE-L, fact accuracy), the one greedy generation path every
generating caller uses (evaluation, the forgetting probe, chat), and the report (eval.json, plots,
report.html) whose columns come from the task's headline metrics.
"""
