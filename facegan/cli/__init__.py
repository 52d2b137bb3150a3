"""The `facegan` command line: the verb table (main), what every verb's jsonargparse parser shares,
--config and --print-config (flags), and one module per verb: prepare (and plot), train, generate (and
export), evaluate, serve, edits (directions, evaluate-edits, generate's edit flags); model_source holds
what the verbs that read a generator share."""
