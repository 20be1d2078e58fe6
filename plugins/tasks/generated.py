"""Synthetic tasks drawn from one random generator: the ``make_data`` and ``sample`` they share.

Such a task draws a split of ``count`` sequences with ``_split(rng, count)`` and names its
sizes with :meth:`GeneratedTask.sizes`. Its data are the training, validation and test splits,
drawn in that order from ``numpy.random.default_rng(seed)``; with ``training: {data: online}``
fresh training batches are drawn the same way. One place for this, so every built-in
synthetic task draws its data, and samples online, by the same rule.
"""

from __future__ import annotations

import numpy as np

from rnnbench import Split, Task, TaskData


class GeneratedTask(Task):
    """Base of the built-in synthetic tasks (adding, copy memory, echo, sine, reverse, sort).

    A subclass is a dataclass with ``train_size``, ``validation_size`` and ``test_size``
    parameters, and defines ``_split(rng, count)`` and :meth:`sizes`.
    """

    online = True

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        raise NotImplementedError

    def sizes(self) -> dict[str, int]:
        """The :class:`TaskData` size fields: ``input_size``, ``output_size`` (and, for an
        encoder-decoder task, ``decoder_input_size``)."""
        raise NotImplementedError

    def make_data(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        return TaskData(
            train=self._split(rng, self.train_size),  # type: ignore[attr-defined]
            validation=self._split(rng, self.validation_size),  # type: ignore[attr-defined]
            test=self._split(rng, self.test_size),  # type: ignore[attr-defined]
            **self.sizes(),
        )

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Split:
        """``n`` fresh training sequences (``data: online``), drawn as the splits are."""
        return self._split(rng, n)
