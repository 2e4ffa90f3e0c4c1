"""The preference task: which of two answers is better, learnt from chosen/rejected pairs (DPO, IPO, ORPO) or from
completions labelled desirable or not (KTO). Records are formatted, masked and truncated by the instruction task
(this task is one); objectives.py holds the losses on sequence log-probabilities, reference.py where the
reference model's log-probabilities come from, curves.py what the diagnosis reads in preference curves.
"""
