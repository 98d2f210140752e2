"""Sequence models: recurrent networks, LSTM, GRU, language models, forecasts.

* :mod:`dlbook.sequences.rnn`: the Elman RNN unrolled by hand (stacked,
  bidirectional), backpropagation through time written out, gradient norms
  across time, gradient clipping, truncated BPTT, and the architectures
  (sequence classifier and tagger, one-to-many generator, encoder-decoder,
  1-D convolutional classifier).
* :mod:`dlbook.sequences.lstm`: the LSTM and GRU cells from their gate
  equations, on the same unrolling skeleton.
* :mod:`dlbook.sequences.char_lm`: a character-level LSTM language model on
  tiny-shakespeare (the char-rnn / nanoGPT split), its evaluation in nats and
  bits per character, sampling, and an n-gram baseline.
* :mod:`dlbook.sequences.time_series`: windows, scalers, baselines, an LSTM
  forecaster and walk-forward validation for forecasting real series.
* :mod:`dlbook.sequences.electricity`: day-ahead electricity demand from the
  past week and the next day's temperature and calendar (``vic_elec``).
* :mod:`dlbook.sequences.tasks`: generated tasks with known answers (sorting,
  patterns, delays, the adding problem, the copy task).

Each recurrent layer is checked against ``torch.nn.RNN``, ``torch.nn.LSTM``
and ``torch.nn.GRU`` (``tests/sequences``). Chapters: ``book/sequences/``.
"""
