package org.erank.opensearch;

import org.opensearch.action.search.SearchRequest;
import org.opensearch.action.search.SearchResponse;
import org.opensearch.action.support.ContextPreservingActionListener;
import org.opensearch.common.util.concurrent.ThreadContext;
import org.opensearch.core.action.ActionListener;
import org.opensearch.search.pipeline.AbstractProcessor;
import org.opensearch.search.pipeline.PipelineProcessingContext;
import org.opensearch.search.pipeline.SearchResponseProcessor;

/**
 * Base of a response processor that answers through its listener only, as neural-search's {@code RerankProcessor}
 * does: a remote call must never block a search thread, so the synchronous path is refused.
 *
 * <p>What it adds over that base: the listener handed to {@link #process} restores the search's
 * {@link ThreadContext} (headers, {@code X-Opaque-Id}) on whichever thread answers, so the continuation of an HTTP
 * reply runs as the search it belongs to; and an exception thrown before the work is handed off fails the search
 * instead of escaping into the pipeline.
 */
abstract class AsyncResponseProcessor extends AbstractProcessor implements SearchResponseProcessor {

    private final ThreadContext threadContext;

    /** {@code threadContext} may be {@code null} (unit tests): the listener is then used as given. */
    AsyncResponseProcessor(String tag, String description, boolean ignoreFailure, ThreadContext threadContext) {
        super(tag, description, ignoreFailure);
        this.threadContext = threadContext;
    }

    @Override
    public final SearchResponse processResponse(SearchRequest request, SearchResponse response) {
        throw new UnsupportedOperationException("the " + getType() + " processor only runs asynchronously (processResponseAsync)");
    }

    @Override
    public final void processResponseAsync(
        SearchRequest request,
        SearchResponse response,
        PipelineProcessingContext context,
        ActionListener<SearchResponse> listener
    ) {
        ActionListener<SearchResponse> out = threadContext == null
            ? listener
            : new ContextPreservingActionListener<>(threadContext.newRestorableContext(false), listener);
        try {
            process(request, response, context, out);
        } catch (RuntimeException e) {
            out.onFailure(e);
        }
    }

    /** Answers {@code listener} exactly once, maybe later and on another thread; throws only before answering. */
    abstract void process(SearchRequest request, SearchResponse response, PipelineProcessingContext context, ActionListener<SearchResponse> listener);
}
