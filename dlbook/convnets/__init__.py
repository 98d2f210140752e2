"""Convolutional networks: convolution from scratch, CNNs, and architectures.

* :mod:`dlbook.convnets.convolution`: output sizes and padding, im2col, a
  from-scratch ``conv2d`` with its backward pass, max and average pooling,
  and a parameter-and-shape table for a stack of layers, checked against
  PyTorch and Keras.
* :mod:`dlbook.convnets.cnn`: a LeNet-style CNN against an MLP of the same
  size, shifted digits, receptive fields, CoordConv, and the pooling and
  dropout ablation.
* :mod:`dlbook.convnets.architectures`: 1x1 convolutions, the Inception
  block, residual blocks and ResNet-18 (equal to torchvision's),
  depthwise-separable convolutions, and the plain and residual CIFAR
  networks of He et al.'s degradation experiment.
* :mod:`dlbook.convnets.capsules`: CapsNet (Sabour et al. 2017): squash,
  primary capsules, routing by agreement (vectorized, checked against a loop),
  the margin and reconstruction losses, and affine-transformed test digits.

Each from-scratch piece is checked against PyTorch, torchvision or Keras in
``tests/convnets``. Chapters: ``book/convnets/convolution.md``, ``cnn.md``,
``architectures.md``, ``capsules.md``.
"""
