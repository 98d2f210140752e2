"""Keras and TensorFlow: the book's models in the other framework.

* :mod:`dlbook.keras.keras_basics`: LeNet in Keras's Sequential, Functional
  and subclassing APIs, ``tf.data`` pipelines, Keras 3's PyTorch backend,
  and weights moved between a PyTorch LeNet and its Keras twin.
* :mod:`dlbook.keras.clothing`: the ML Zoomcamp's clothing classifier, a
  dense head on Keras's frozen ImageNet Xception with cached features, the
  course's steps measured, and TensorBoard logs read back.
* :mod:`dlbook.keras.tuner`: hyperparameter search of a CNN on MNIST with
  KerasTuner's RandomSearch, Hyperband and BayesianOptimization, against a
  random search written by hand.
* :mod:`dlbook.keras.deploy`: a trained Keras model saved as ``.keras``,
  exported as a SavedModel and converted to TFLite (float32 and int8), run
  in LiteRT's interpreter, timed, and served over HTTP.
"""
