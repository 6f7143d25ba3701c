"""ERank in search engines: installers for OpenSearch search pipelines (our native ``erank``
processor, or ml-commons + the built-in ``rerank`` processor) and Elasticsearch ``rerank``
inference endpoints, all pointing at the scoring server's REST front (``erank rest``).

The OpenSearch plugin itself (Java, Maven) lives in ``java/``; the JSON the installers send is in
``resources/``.
"""
