"""Regularization and normalization: penalties, dropout, early stopping, batch and layer norm."""
