"""Evaluation: turning predictions into numbers a user can trust, and pages a user can read.

metrics, genmetrics (scikit-learn classification metrics; exact match, token F1, ROUGE-L, fact accuracy, and
their per-example tallies), generation (the one greedy generation path), uncertainty (bootstrap intervals,
McNemar and paired-bootstrap tests), slices, calibration (ECE, temperature scaling), baselines (majority
class, linear probe), analysis (all of these over a run's per-example rows, into eval.json), verdict (the
one-paragraph answer), tblog (TensorBoard at the end of a run), and the pages: report (eval.json, plots,
report.html), report_html + report_numbers + report_story (its sections), html (shared building blocks),
plots, comparison (several runs side by side). What is shown comes from the task's headline metrics.
"""
