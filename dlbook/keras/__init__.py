"""Keras and TensorFlow: the book's models in the other framework.

* :mod:`dlbook.keras.keras_basics`: LeNet in Keras's Sequential, Functional
  and subclassing APIs, ``tf.data`` pipelines, Keras 3's PyTorch backend,
  and weights moved between a PyTorch LeNet and its Keras twin.
"""
