"""Training recipes of the models the book trains itself (LeNet, denoisers, PRMs), on :func:`advlab.train.fit`."""
