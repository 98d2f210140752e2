"""Training foundations: logistic regression to the MLP, and backpropagation.

* ``dlbook.foundations.mlp``: activation functions and their derivatives,
  logistic and softmax regression fitted by gradient descent, the multilayer
  perceptron and equal-budget widths (chapter ``book/foundations/mlp.md``);
* ``dlbook.foundations.backprop``: a small reverse-mode automatic
  differentiation engine on NumPy arrays, the layer-wise backpropagation
  equations of an MLP, a numerical gradient check, and an SGD trainer
  (chapter ``book/foundations/backprop.md``).
"""
