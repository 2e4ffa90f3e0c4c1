"""Guards: what keeps a run honest about the damage it does. The forgetting guard measures a probe before and
after training (earlier tasks' accuracy, general-text perplexity, embedding geometry: the task picks the probe)
and mitigates with replay and EWC / L2 penalties; the diagnosis reads the logged curves and labels a run
healthy, overfitting, underfitting or unstable, with advice the task and method phrase. Guards receive what
they need from the recipe (earlier tasks already prepared) and never import a recipe.
"""
