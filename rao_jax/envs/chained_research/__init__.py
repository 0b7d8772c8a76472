"""Chained multi-hop research: the DeepDive stand-in (docs/chained_research.md).

`graph` generates a fictional knowledge graph, `pages` renders one page per entity, `search` indexes them
with BM25, `facts` and `questions` turn random walks into multi-hop questions and splits, `scoring`
normalises answers, `env` is the node environment, `solvers` the flat and recursive experts, `suite`,
`dataset` and `stats` plug it into the trainer, tfds and the command line.
"""
