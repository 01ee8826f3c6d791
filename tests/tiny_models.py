"""Settings of the tiny models the tests train (a plain module: test files import it by name, which a
``conftest.py`` cannot promise once several folders have one)."""

#: Hyperparameters of the tiny test model: seconds of CPU training, not a useful reader.
TINY_HP = dict(lr=0.004, epochs=2, batch_size=4, input_size=128, val_interval=1)
