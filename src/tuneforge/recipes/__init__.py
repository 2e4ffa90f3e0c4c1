"""Recipes: each command as a plain function over the stages (torchtune-style). `train` prepares (read, vet,
encode), builds the model, runs the guards and the loop, evaluates and saves; `inference` is the one place that
loads a finished run (eval, predict, chat, export, sequence, continued runs); crossval, compare, sequence, scan,
chat and export compose those two. Recipes import the stages; no stage imports a recipe.
"""
