"""Graph neural networks: message passing, the GCN and the GAT, written from scratch.

* :mod:`dlbook.graphs.gcn`: graphs as edge lists, the renormalized adjacency of Kipf & Welling,
  the ``GCNConv`` layer, the two-layer GCN, and full-batch semi-supervised training.
* :mod:`dlbook.graphs.gat`: a segment softmax, the ``GATConv`` layer of Velickovic et al., the
  transductive and inductive GAT models, and inductive multi-label training (micro-F1).
* :mod:`dlbook.graphs.synthetic`: graphs with known structure for experiments: the contextual
  stochastic block model, and a generated multi-label, multi-graph dataset shaped like PPI.

Each layer is checked against PyTorch Geometric (``tests/graphs``). Chapters:
``book/graphs/gcn.md`` and ``book/graphs/gat.md``.
"""

from dlbook.data.graphs import quiet_pyg_import

quiet_pyg_import()  # every module here uses PyG's Data; import it once, without its deprecation warning
