"""The instruction task: records → chat-formatted token ids with a loss mask (formatting), packed or
length-bucketed batches and a chunked lm_head loss (lm), generation and generation metrics (task).
"""
