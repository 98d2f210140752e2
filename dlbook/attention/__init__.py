"""Attention and Transformers.

* :mod:`dlbook.attention.attention`: additive and multiplicative attention in
  the recurrent encoder-decoder, and argmax attention with its fixes
  (straight-through, Gumbel-softmax).
* :mod:`dlbook.attention.transformer`: scaled dot-product and multi-head
  attention, the pre-LN block, positions (sinusoidal, learned, rotary), a
  character-level GPT with a key-value cache, and the cost of attention.
* :mod:`dlbook.attention.vit`: the Vision Transformer (patch embedding, class
  token, learned positions), torchvision's weights copied into it, and
  attention rollout.

Each layer is checked against PyTorch's (``tests/attention``). Chapters:
``book/attention/``.
"""
