"""Methods: how a model is trained, behind one interface (methods/base.py). A method decides which parameters
train (full, lora/dora, qlora, adapter, freeze, scratch), how the result is saved, reloaded and merged, and
declares what others ask about it (family, whether it saves a full model, frozen base, conventional learning
rate, its advice when a run over- or underfits). Code outside methods/ reads those attributes, never the name.
"""
