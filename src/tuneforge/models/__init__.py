"""Models: finding and loading the pretrained model (embedded names, Hugging Face directories, GGUF files;
nothing touches the network; broken files end in one error naming the file) and its anatomy (the layer stack,
the task head, body and lm_head) that methods, speed levers and continued runs look up in one place.
"""
