"""The model engine: one worker thread owns the model and decodes batches of tick requests
(`worker`); the scheduler feeds it from the event loop by deadline (`scheduler`); `load` is
what the scheduler records of its work, for admission."""
