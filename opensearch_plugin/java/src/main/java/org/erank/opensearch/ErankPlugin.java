package org.erank.opensearch;

import org.opensearch.plugins.Plugin;
import org.opensearch.plugins.SearchPipelinePlugin;
import org.opensearch.plugins.SearchPlugin;
import org.opensearch.search.pipeline.Processor;
import org.opensearch.search.pipeline.SearchRequestProcessor;
import org.opensearch.search.pipeline.SearchResponseProcessor;

import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.function.Supplier;

/**
 * ERank reranking for OpenSearch search pipelines.
 *
 * <ul>
 *   <li>response processor {@code erank} ({@link ErankRerankProcessor});</li>
 *   <li>request processor {@code erank_window} ({@link ErankWindowProcessor}), for correct paging;</li>
 *   <li>the {@code ext.erank} search extension ({@link ErankSearchExtBuilder}): the query text in requests,
 *       the outcome marker in responses.</li>
 * </ul>
 */
public class ErankPlugin extends Plugin implements SearchPipelinePlugin, SearchPlugin {

    private volatile RerankTransport transport;

    @Override
    public List<SearchExtSpec<?>> getSearchExts() {
        return Collections.singletonList(
            new SearchExtSpec<>(ErankSearchExtBuilder.NAME, ErankSearchExtBuilder::new, ErankSearchExtBuilder::parse)
        );
    }

    @Override
    public Map<String, Processor.Factory<SearchRequestProcessor>> getRequestProcessors(Parameters parameters) {
        return Collections.singletonMap(ErankWindowProcessor.TYPE, new ErankWindowProcessor.Factory());
    }

    @Override
    public Map<String, Processor.Factory<SearchResponseProcessor>> getResponseProcessors(Parameters parameters) {
        Executor executor = parameters.genericExecutor == null ? null : parameters.genericExecutor::accept;
        Supplier<RerankTransport> supplier = () -> transport(executor);
        return Collections.singletonMap(
            ErankRerankProcessor.TYPE,
            new ErankRerankProcessor.Factory(supplier, parameters.threadContext, parameters.scheduler)
        );
    }

    /** One HTTP client per node, made on first use. */
    private RerankTransport transport(Executor executor) {
        RerankTransport t = transport;
        if (t == null) {
            synchronized (this) {
                t = transport;
                if (t == null) {
                    t = new HttpRerankTransport(executor);
                    transport = t;
                }
            }
        }
        return t;
    }
}
