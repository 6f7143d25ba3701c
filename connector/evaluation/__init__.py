"""``erank eval``: effectiveness of ERank on a BEIR-format collection, measured with ir-measures.

The scoring server is reached through :mod:`erank_contract.client` only, and every score (ERank and
hybrid) is the server's own. Modules, in the order a run uses them:

- ``beir``: the collection (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and document text;
- ``firststage``: candidates per query from a TREC run file;
- ``engine``: candidates per query from a BM25 index built in OpenSearch / Elasticsearch;
- ``rerank``: one ``Rerank`` call per query and alpha, queries in flight together;
- ``runs``: the rankings that get evaluated (first stage, ERank alone, hybrid per alpha);
- ``metrics``: nDCG@10, RR@10, R@100 per query and mean, by ir-measures;
- ``report``: the JSON, the alpha-sweep plot and the console tables;
- ``runner``: the whole evaluation, :func:`connector.evaluation.runner.run_eval`;
- ``command``: its command line, registered as ``erank eval`` in ``erank_cli/app.py``.
"""
